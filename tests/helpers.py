"""Test helpers shared by the test modules: paths to the real Lung1 files in ../shared, the
tiny synthetic geometry, a builder of tiny cohorts, a free port, and a file-event wait."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from nsclc_engine.cohort.build import CohortConfig, run_cohort
from nsclc_engine.synth.generate import write_cohort
from nsclc_engine.synth.outcome import SynthConfig

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared"
LUNG1_CASE = SHARED / "data" / "lung1-dicom-rt" / "LUNG1-001_20180209_CT.tar.xz"
LUNG1_CLINICAL = (
    SHARED / "data" / "lung1-clinical-v3" / "NSCLC Radiomics Lung1.clinical-version3-Oct 2019.csv"
)
LUNG1_FEATURES = SHARED / "data" / "lung1-pmtoolbox-features" / "extracted_features.csv"

# a tiny but complete chest: 48 x 48 pixels of 8 mm, 16 slices of 12 mm (384 x 384 x 192 mm)
TINY = SynthConfig(
    n_patients=3,
    seed=7,
    rows=48,
    pixel_spacing_mm=8.0,
    n_slices=16,
    slice_thickness_mm=12.0,
    defects="none",
    workers=1,
)
# the same tiny geometry as command-line overrides
TINY_SET_ARGS = [
    arg
    for key in ("rows", "pixel_spacing_mm", "n_slices", "slice_thickness_mm")
    for arg in ("--set", f"{key}={getattr(TINY, key)}")
]


def require_shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: these tests need the project's ../shared data folder")
    return path


def build_synthetic(root: Path, **changes):
    """Write a tiny synthetic cohort under ``root`` and build its cohort (serially, quietly)."""
    config = replace(TINY, **changes)
    metadata = write_cohort(config, root / "source", show_progress=False)
    result = run_cohort(
        root / "source" / "dicom",
        root / "source" / "clinical.csv",
        root / "cohort",
        CohortConfig(workers=1),
        show_progress=False,
    )
    return config, metadata, result


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` (a file appearing, a status changing) until true, or fail naming
    ``what``. For events that live in files or other processes, where there is nothing to
    await directly."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def medicalnet_state(depth: int) -> dict:
    """A randomly initialised MedicalNet backbone of ``depth`` as MedicalNet saves it: from
    DataParallel (``module.``), with its segmentation head."""
    import torch
    from monai.networks import nets
    from monai.networks.nets.resnet import get_medicalnet_pretrained_resnet_args

    bias, shortcut = get_medicalnet_pretrained_resnet_args(depth)
    backbone = getattr(nets, f"resnet{depth}")(
        spatial_dims=3,
        n_input_channels=1,
        conv1_t_stride=2,
        shortcut_type=shortcut,
        bias_downsample=bias,
        feed_forward=False,
    )
    state = {f"module.{key}": value for key, value in backbone.state_dict().items()}
    return state | {"module.conv_seg.0.weight": torch.zeros(32, 512, 3, 3, 3)}


def open_app(monkeypatch, artifacts, script: str = "app.py", admin: bool = True):
    """The dashboard (or one page, ``script``) under Streamlit's AppTest on ``artifacts``,
    without the first-start demo jobs; not run yet. ``admin``: opened with the local admin
    link (``?token=``), as the person who started the server does; otherwise a viewer."""
    from streamlit.testing.v1 import AppTest

    from nsclc_engine.access import local_admin_token

    monkeypatch.setenv("NSCLC_ARTIFACTS_DIR", str(artifacts))
    monkeypatch.setenv("NSCLC_NO_AUTOSTART", "1")
    at = AppTest.from_file(str(PROJECT / script), default_timeout=60)  # pages import torch
    if admin:
        at.query_params["token"] = local_admin_token(artifacts)
    return at
