import json

import pytest

from nsclc_engine.cohort.build import CohortConfig
from nsclc_engine.config import load_config, save_config
from nsclc_engine.synth.outcome import SynthConfig


def test_defaults_then_file_then_overrides(tmp_path):
    path = tmp_path / "cohort_config.json"
    save_config(CohortConfig(roi_pattern="GTV.*", workers=3), path)
    assert json.loads(path.read_text())["config_class"] == "CohortConfig"
    config = load_config(CohortConfig, path, ["union_matching_rois=true", "workers=1"])
    assert config == CohortConfig(roi_pattern="GTV.*", union_matching_rois=True, workers=1)


def test_round_trip(tmp_path):
    config = SynthConfig(n_patients=5, pixel_spacing_mm=2.5, defects="1:no_ct")
    save_config(config, tmp_path / "c.json")
    assert load_config(SynthConfig, tmp_path / "c.json") == config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("rois=GTV", r"unknown CohortConfig key\(s\) \['rois'\]; valid keys: \['min_gtv_voxels'"),
        ("workers=two", "expected a int"),
        ("union_matching_rois=maybe", "expected true or false"),
        ("workers", "not key=value"),
    ],
)
def test_bad_overrides_say_what_is_valid(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(CohortConfig, None, [override])


def test_config_file_values_are_type_checked(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"workers": "2"}')
    with pytest.raises(ValueError, match=r"c.json: workers: '2' is not a <class 'int'>"):
        load_config(CohortConfig, path)
    path.write_text('{"pixel_spacing_mm": 3}')  # an int where a float is expected is fine
    assert load_config(SynthConfig, path).pixel_spacing_mm == 3.0
