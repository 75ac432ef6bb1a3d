"""Ingestion benchmark: index + cohort on the 100-patient demo, and pydicom vs SimpleITK reading.

    python benchmarks/bench_ingest.py [--patients 100] [--repeats 5]

Prints files/s for header indexing (serial and parallel), patients/s for cohort building, and the
time to read one 100+-slice CT series with the engine's pydicom reader and with SimpleITK, with
their ratio. The series is the real LUNG1-001 (134 x 512 x 512) when ../shared is present,
otherwise a synthetic 120 x 512 x 512 series. All timings are taken in this one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tarfile
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nsclc_engine.cohort import dicom_io
from nsclc_engine.cohort.build import CohortConfig, build_cohort
from nsclc_engine.cohort.clinical import read_clinical_csv
from nsclc_engine.synth.generate import write_cohort
from nsclc_engine.synth.outcome import SynthConfig

LUNG1_CASE = (
    Path(__file__).resolve().parents[2] / "shared/data/lung1-dicom-rt/LUNG1-001_20180209_CT.tar.xz"
)


def timed(function, repeats: int = 1):
    durations, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations), result


def one_large_series(work: Path) -> tuple[str, Path]:
    if LUNG1_CASE.exists():
        with tarfile.open(LUNG1_CASE, "r:xz") as tar:
            tar.extractall(work / "lung1", filter="data")
        return "real LUNG1-001", work / "lung1"
    config = SynthConfig(
        n_patients=1,
        rows=512,
        pixel_spacing_mm=0.9,
        n_slices=120,
        slice_thickness_mm=3.0,
        defects="none",
    )
    write_cohort(config, work / "large", show_progress=False)
    return "synthetic 120-slice series", work / "large" / "dicom"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = replace(SynthConfig(), n_patients=args.patients)
        seconds, _ = timed(lambda: write_cohort(config, work / "demo", show_progress=False))
        print(
            f"synth: {args.patients} demo patients written in {seconds:.1f} s "
            f"({args.patients / seconds:.1f} patients/s)"
        )

        dicom = work / "demo" / "dicom"
        serial_s, index = timed(lambda: dicom_io.index_dicom_tree(dicom, 1, False))
        dicom_io.PARALLEL_MIN_FILES = 1
        parallel_s, index = timed(lambda: dicom_io.index_dicom_tree(dicom, 0, False))
        n_files = len(index.headers)
        print(
            f"index: {n_files} files; serial {n_files / serial_s:.0f} files/s, "
            f"parallel {n_files / parallel_s:.0f} files/s (parallel/serial speed-up "
            f"{serial_s / parallel_s:.2f}x)"
        )
        clinical = read_clinical_csv(work / "demo" / "clinical.csv")
        cohort_s, result = timed(lambda: build_cohort(index, clinical, CohortConfig(), False))
        n_patients = result.summary["n_imaging_patients"]
        print(
            f"cohort: {n_patients} patients read and checked in {cohort_s:.1f} s "
            f"({n_patients / cohort_s:.1f} patients/s); "
            f"index + cohort {parallel_s + cohort_s:.1f} s "
            f"= {n_files / (parallel_s + cohort_s):.0f} files/s end to end"
        )

        label, folder = one_large_series(work)
        series = dicom_io.index_dicom_tree(folder, 1, False)
        geometry = dicom_io.ct_series_geometry([h for h in series.headers if h.modality == "CT"])
        n_slices = geometry.shape_zyx[0]
        dicom_io.read_ct_volume(geometry)  # warm the page cache for both readers
        pydicom_times, sitk_times = [], []
        for _ in range(args.repeats):  # interleaved, so drift in machine load hits both alike
            pydicom_times.append(timed(lambda: dicom_io.read_ct_volume(geometry))[0])
            sitk_times.append(timed(lambda: dicom_io.read_ct_volume_sitk(geometry))[0])
        pydicom_s, sitk_s = statistics.median(pydicom_times), statistics.median(sitk_times)
        print(
            f"read {label} {geometry.shape_zyx}: pydicom {pydicom_s:.3f} s "
            f"({n_slices / pydicom_s:.0f} files/s), SimpleITK {sitk_s:.3f} s "
            f"({n_slices / sitk_s:.0f} files/s); ratio SimpleITK/pydicom time "
            f"{sitk_s / pydicom_s:.2f} (median of {args.repeats})"
        )


if __name__ == "__main__":
    main()
