"""The embedded demo: a synthetic cohort written as DICOM, then read back by the cohort stage.

``python -m nsclc_engine.demo`` builds ``<artifacts>/demo/source`` (DICOM + clinical CSV) and
``<artifacts>/demo/cohort`` (cohort.csv, cleaning report) once; later runs reuse them.
The artifacts folder is ``artifacts/`` beside the package, or ``$NSCLC_ARTIFACTS_DIR``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nsclc_engine.cohort.build import CohortConfig, CohortResult, format_summary, run_cohort
from nsclc_engine.config import load_config
from nsclc_engine.paths import artifacts_dir
from nsclc_engine.synth.generate import CLINICAL_FILE, CONFIG_FILE, METADATA_FILE, write_cohort
from nsclc_engine.synth.outcome import SynthConfig

# sized like Lung1: 12 deliberately broken patients -> 422 included (Lung1 has 422)
DEMO_PATIENTS = 434


@dataclass(frozen=True)
class DemoPaths:
    root: Path

    @property
    def source(self) -> Path:
        return self.root / "source"

    @property
    def dicom(self) -> Path:
        return self.source / "dicom"

    @property
    def clinical_csv(self) -> Path:
        return self.source / CLINICAL_FILE

    @property
    def cohort(self) -> Path:
        return self.root / "cohort"

    @property
    def marker(self) -> Path:
        return self.root / ".nsclc_demo"

    def is_built(self) -> bool:
        return (self.cohort / "cohort.csv").is_file() and (self.source / METADATA_FILE).is_file()


def source_of(cohort_dir: str | os.PathLike) -> Path:
    """The synthetic source a demo-layout cohort folder was built from (its sibling)."""
    return DemoPaths(Path(cohort_dir).parent).source


def demo_paths(artifacts: str | os.PathLike | None = None) -> DemoPaths:
    return DemoPaths((Path(artifacts) if artifacts is not None else artifacts_dir()) / "demo")


def _saved_config(paths: DemoPaths) -> SynthConfig | None:
    try:
        return load_config(SynthConfig, paths.source / CONFIG_FILE)
    except (OSError, ValueError):
        return None


def build_demo(
    artifacts: str | os.PathLike | None = None,
    synth_config: SynthConfig | None = None,
    force: bool = False,
    show_progress: bool = True,
    on_progress: Callable[[str, float], None] | None = None,
) -> CohortResult | None:
    """Write the synthetic cohort and build its cohort; ``None`` when already built.

    An existing demo written with another ``SynthConfig`` is rebuilt. ``on_progress(stage,
    fraction)`` follows the writing (most of the time) and then the reading back.
    """
    report = on_progress or (lambda stage, fraction: None)
    paths = demo_paths(artifacts)
    synth_config = synth_config or SynthConfig(n_patients=DEMO_PATIENTS)
    if paths.is_built() and not force and _saved_config(paths) == synth_config:
        return None
    if paths.root.exists() and any(paths.root.iterdir()):
        if not paths.marker.is_file():
            raise FileExistsError(
                f"{paths.root} exists but was not written by the demo builder; move it away "
                "or choose another artifacts folder"
            )
        shutil.rmtree(paths.root)  # a demo we wrote ourselves (possibly half-built)
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.marker.write_text("written by nsclc_engine.demo; safe to delete\n")
    stage = f"writing the synthetic demo cohort ({synth_config.n_patients} patients)"
    write_cohort(
        synth_config,
        paths.source,
        show_progress=show_progress,
        on_progress=lambda fraction: report(stage, 0.75 * fraction),
    )
    report("reading the demo cohort back (DICOM index, CT + RTSTRUCT)", 0.75)
    return run_cohort(
        paths.dicom, paths.clinical_csv, paths.cohort, CohortConfig(), show_progress=show_progress
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nsclc_engine.demo", description="Build the embedded demo cohort once."
    )
    parser.add_argument(
        "--artifacts", help="artifacts folder (default: $NSCLC_ARTIFACTS_DIR or ./artifacts)"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if it exists")
    args = parser.parse_args(argv)
    paths = demo_paths(args.artifacts)
    try:
        result = build_demo(args.artifacts, force=args.force)
    except FileExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if result is None:
        print(f"Demo cohort already built in {paths.root} (use --force to rebuild).")
    else:
        print(format_summary(result.summary))
        print(f"Demo cohort written to {paths.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
