from dataclasses import replace

import pytest

from nsclc_engine.demo import build_demo, demo_paths

from .conftest import TINY


def test_builds_once_and_rebuilds_a_half_built_demo(tmp_path):
    config = replace(TINY, n_patients=2)
    assert build_demo(tmp_path, synth_config=config, show_progress=False) is not None
    assert build_demo(tmp_path, synth_config=config, show_progress=False) is None
    paths = demo_paths(tmp_path)
    (paths.cohort / "cohort.csv").unlink()  # as if killed before the end
    result = build_demo(tmp_path, synth_config=config, show_progress=False)
    assert result is not None and len(result.cohort) == 2


def test_never_deletes_a_folder_it_did_not_write(tmp_path):
    foreign = tmp_path / "demo" / "my_notes.txt"
    foreign.parent.mkdir()
    foreign.write_text("precious")
    with pytest.raises(FileExistsError, match="not written by the demo builder"):
        build_demo(tmp_path, synth_config=replace(TINY, n_patients=1), show_progress=False)
    assert foreign.read_text() == "precious"
