"""Shared fixtures: the real Lung1 files from ../shared and tiny synthetic cohorts."""

from __future__ import annotations

import tarfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from nsclc_engine.synth.generate import write_cohort
from tests.helpers import LUNG1_CASE, LUNG1_CLINICAL, TINY, build_synthetic, require_shared
from tests.run_folders import hand_written_run


@pytest.fixture(autouse=True, scope="session")
def _own_artifacts_and_no_autostart(tmp_path_factory):
    """No test writes into the project's artifacts/ or launches the demo jobs by accident: a
    stray first start during the suite once trained the full demo beside it. Tests that want
    either set it up themselves. A developer's shared review database is never written."""
    patch = pytest.MonkeyPatch()
    patch.setenv("NSCLC_ARTIFACTS_DIR", str(tmp_path_factory.mktemp("artifacts")))
    patch.setenv("NSCLC_NO_AUTOSTART", "1")
    patch.delenv("NSCLC_CACHE_DIR", raising=False)
    patch.delenv("NSCLC_REVIEW_DB", raising=False)
    yield
    patch.undo()


@pytest.fixture(scope="session")
def lung1_dir(tmp_path_factory) -> Path:
    """LUNG1-001 unpacked once per session into a temporary folder (flat: CT, RTSTRUCT, ...)."""
    archive = require_shared(LUNG1_CASE)
    target = tmp_path_factory.mktemp("lung1")
    with tarfile.open(archive, "r:xz") as tar:
        tar.extractall(target, filter="data")
    return target


@pytest.fixture(scope="session")
def lung1_clinical() -> Path:
    return require_shared(LUNG1_CLINICAL)


@pytest.fixture(scope="session")
def clean_tiny(tmp_path_factory):
    """The three-patient tiny cohort without defects: (config, metadata, result)."""
    return build_synthetic(tmp_path_factory.mktemp("clean_tiny"))


@pytest.fixture(scope="session")
def tiny_source(tmp_path_factory):
    """40 small patients for training tests; os_2y is roughly balanced, so splits hold both."""
    root = tmp_path_factory.mktemp("train_source")
    write_cohort(replace(TINY, n_patients=40, seed=1), root, show_progress=False)
    return root


@pytest.fixture(scope="session")
def dashboard_artifacts(tiny_source, tmp_path_factory):
    """An artifacts folder holding two finished runs trained for real on the tiny cohort with the
    smoke preset and a ResNet-10 (the smallest network with Grad-CAM layers): "fixture" (os_2y
    classification) and "fixture-survival" (Cox head)."""
    from nsclc_engine.train.__main__ import main

    artifacts = tmp_path_factory.mktemp("dashboard_artifacts")
    args = ["--dicom", str(tiny_source / "dicom"), "--clinical", str(tiny_source / "clinical.csv")]
    args += ["--label", "os_2y", "--preset", "smoke", "--epochs", "2", "--quiet"]
    args += ["--set", "model=resnet10"]
    assert main([*args, "--artifacts", str(artifacts), "--run-id", "fixture"]) == 0
    survival = [*args, "--artifacts", str(artifacts), "--run-id", "fixture-survival"]
    survival[survival.index("os_2y")] = "deadstatus_event"  # the event of the survival task
    assert main([*survival, "--task", "survival"]) == 0
    return artifacts


@pytest.fixture(scope="session")
def shown_artifacts(tiny_source, tiny_cohort, tmp_path_factory):
    """An artifacts folder holding two finished runs written by hand, without training, on
    the tiny cohort and evaluated for real (:mod:`tests.run_folders`): "fixture" (os_2y
    classification) and "fixture-survival" (a Cox model's risks). For tests about showing or
    summarising runs; tests that load a model use ``dashboard_artifacts``."""
    artifacts = tmp_path_factory.mktemp("shown_artifacts")
    hand_written_run(artifacts, "fixture", tiny_source, tiny_cohort)
    hand_written_run(artifacts, "fixture-survival", tiny_source, tiny_cohort, task="survival")
    return artifacts


@pytest.fixture(scope="session")
def fmcib_trunk() -> dict[str, torch.Tensor]:
    """A randomly initialised FMCIB trunk, built as FMCIB's own loader builds it (MONAI
    resnet50 with its defaults of shortcut B and a biased downsample), in half precision to
    halve the files written from it."""
    from monai.networks.nets import resnet50

    torch.manual_seed(0)
    trunk = resnet50(n_input_channels=1, widen_factor=2, conv1_t_stride=2, feed_forward=False)
    return {
        key: value.half() if value.is_floating_point() else value
        for key, value in trunk.state_dict().items()
    }


@pytest.fixture(scope="session")
def fmcib_file(fmcib_trunk, tmp_path_factory):
    """The trunk in FMCIB's VISSL layout, ``{"trunk_state_dict": ...}``."""
    path = tmp_path_factory.mktemp("weights") / "fmcib.torch"
    torch.save({"trunk_state_dict": fmcib_trunk}, path)
    return path


@pytest.fixture(scope="session")
def tiny_cohort(tiny_source, tmp_path_factory) -> Path:
    """The 40-patient tiny source built into a cohort folder (``cohort.csv``)."""
    from nsclc_engine.cohort.build import CohortConfig, run_cohort

    folder = tmp_path_factory.mktemp("tiny_cohort") / "cohort"
    run_cohort(
        tiny_source / "dicom",
        tiny_source / "clinical.csv",
        folder,
        CohortConfig(),
        show_progress=False,
    )
    return folder


@pytest.fixture(scope="session")
def feature_artifacts(tiny_cohort, fmcib_file, tmp_path_factory) -> Path:
    """An artifacts folder holding one finished frozen-feature run, "fmcib-features": the
    (randomly initialised) FMCIB trunk's features of the tiny cohort and a logistic model."""
    from nsclc_engine.features.__main__ import main

    artifacts = tmp_path_factory.mktemp("feature_artifacts")
    argv = ["--weights", str(fmcib_file), "--recipe", "fmcib", "--cohort", str(tiny_cohort)]
    argv += ["--name", "fmcib-features", "--artifacts", str(artifacts), "--quiet"]
    assert main([*argv, "--set", "bootstrap_resamples=200"]) == 0
    return artifacts


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server for the session: Debian's binaries, ``initdb`` and ``pg_ctl``
    (as the ``postgres`` user when the tests run as root) in a temporary folder, on a free
    port of 127.0.0.1; skipped with a message where the binaries are absent."""
    import os
    import shutil
    import subprocess
    import tempfile

    from tests.helpers import free_port

    binaries = [Path("/usr/lib/postgresql/15/bin"), *map(Path, os.get_exec_path())]
    found = [folder for folder in binaries if (folder / "initdb").exists()]
    if not found:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) are absent: apt install postgresql"
        )
    initdb, pg_ctl = found[0] / "initdb", found[0] / "pg_ctl"
    folder = Path(tempfile.mkdtemp(prefix="nsclc-postgres-"))
    as_user = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()
    subprocess.run(
        [*as_user, initdb, "-D", data, "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    subprocess.run(
        [*as_user, pg_ctl, "-D", data, "-o", options, "-l", folder / "log", "-w", "start"],
        check=True,
        capture_output=True,
    )
    yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    subprocess.run([*as_user, pg_ctl, "-D", data, "-m", "fast", "-w", "stop"], capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)
