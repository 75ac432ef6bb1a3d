import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from nsclc_engine.demo import build_demo, demo_paths
from tests.helpers import TINY


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


def test_the_default_demo_is_sized_like_lung1_with_30_of_each_class_per_held_out_split():
    """Outcomes only (no images): 422 usable patients, and for the default label every seed's
    validation and test splits hold at least 30 patients of each class."""
    from nsclc_engine.cohort.clinical import add_labels, read_clinical_csv
    from nsclc_engine.cohort.splits import SplitConfig, stratified_split
    from nsclc_engine.demo import DEMO_PATIENTS
    from nsclc_engine.synth.generate import clinical_rows
    from nsclc_engine.synth.outcome import SynthConfig, parse_defects, simulate_patient
    from nsclc_engine.train.config import TrainConfig

    config = SynthConfig(n_patients=DEMO_PATIENTS)
    defects = parse_defects(config)
    truths = [simulate_patient(config, n, defects.get(n, "")) for n in range(1, DEMO_PATIENTS + 1)]
    assert sum(not t.defect for t in truths) == 422
    clean = [t for t in truths if not t.defect]
    path = Path(tempfile.mkdtemp()) / "clinical.csv"
    clinical_rows(clean).to_csv(path, index=False)
    table, _ = add_labels(read_clinical_csv(path))
    label = TrainConfig().label
    assert label == "os_2y"
    table = table[table[label].notna()]
    for seed in (0, 1, 2):
        split = stratified_split(table.patient_id, table[label].astype(int), SplitConfig(seed=seed))
        by_id = table.set_index("patient_id")[label]
        for part in ("validation", "test"):
            counts = by_id.loc[split[part]].value_counts()
            assert counts.min() >= 30, (seed, part, counts.to_dict())
