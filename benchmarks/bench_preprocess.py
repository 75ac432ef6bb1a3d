"""Preprocessing benchmark: our pipeline vs a plain MONAI transform chain, and the cache.

    python benchmarks/bench_preprocess.py [--patients 10]

On the same demo patients (and the real LUNG1-001 at the paper preset when ../shared is
present), in this one run:

* ours: read the series (pydicom), rasterise the GTV from the RTSTRUCT, crop, resize, window;
* MONAI: LoadImage(PydicomReader) on the series folder, ScaleIntensityRange, SpatialCrop with
  our box, Resize (trilinear) -- the same steps minus the RTSTRUCT, which MONAI cannot read;
* a cached load (index lookup + CRC check + ``np.load``) against preprocessing from DICOM, and
  ``.npy`` memory maps against arrays pickled into diskcache (the store we chose);
* peak resident memory of one worker preprocessing LUNG1-001 at the paper preset.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nsclc_engine.cohort.build import CohortConfig, run_cohort
from nsclc_engine.preprocess.cache import VolumeCache
from nsclc_engine.preprocess.volumes import (
    PRESETS,
    cache_key,
    cohort_sources,
    preprocess_patient,
    read_source,
    sampling_grid,
)
from nsclc_engine.synth.generate import write_cohort
from nsclc_engine.synth.outcome import SynthConfig

LUNG1_CASE = (
    Path(__file__).resolve().parents[2] / "shared/data/lung1-dicom-rt/LUNG1-001_20180209_CT.tar.xz"
)
LUNG1_CLINICAL = (
    Path(__file__).resolve().parents[2]
    / "shared/data/lung1-clinical-v3/NSCLC Radiomics Lung1.clinical-version3-Oct 2019.csv"
)


def seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def monai_chain(source, config, work: Path):
    """LoadImage -> ScaleIntensityRange -> SpatialCrop (our box) -> Resize, from the same files."""
    from monai.data import PydicomReader
    from monai.transforms import Compose, LoadImage, Resize, ScaleIntensityRange, SpatialCrop

    _, mask = read_source(source)  # only for the box; not timed
    _, _, box = sampling_grid(mask, _spacing(source), config)
    # MONAI reads a folder as one series: give it the CT files alone (LUNG1-001's folder also
    # holds RTSTRUCT, RTDOSE and RTPLAN files)
    folder = work / f"ct_only_{source.patient_id}"
    folder.mkdir(exist_ok=True)
    for header in source.ct_headers:
        link = folder / Path(header.path).name
        if not link.exists():
            link.symlink_to(header.path)
    folder = str(folder)

    def run():
        image = LoadImage(reader=PydicomReader(), ensure_channel_first=True, image_only=True)(
            folder
        )
        # MONAI arrays are (C, x, y, z): reverse our (z, y, x) box
        start = [box[4], box[2], box[0]]
        end = [box[5], box[3], box[1]]
        chain = Compose(
            [
                ScaleIntensityRange(a_min=-1000, a_max=1000, b_min=0.0, b_max=1.0, clip=True),
                SpatialCrop(roi_start=start, roi_end=end),
                Resize(spatial_size=config.out_shape[::-1], mode="trilinear"),
            ]
        )
        return chain(image)

    return run


def _spacing(source):
    from nsclc_engine.cohort import dicom_io

    return dicom_io.ct_series_geometry(source.ct_headers).spacing_mm


# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the (large) parent across exec
PEAK_RSS_SCRIPT = """
import sys
from nsclc_engine.preprocess.volumes import PRESETS, cohort_sources, preprocess_patient
source = cohort_sources(sys.argv[1])[0]
preprocess_patient(source, PRESETS[sys.argv[2]])
status = open("/proc/self/status").read().split("VmHWM:")[1]
print(int(status.split()[0]) / 1024)
"""


def peak_memory_mb(cohort_dir: Path, preset: str) -> float:
    """Peak RSS of a fresh worker process preprocessing the cohort's first patient."""
    output = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_SCRIPT, str(cohort_dir), preset],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout
    return float(output.strip().splitlines()[-1])


def compare(label, sources, config, work, repeats=3):
    ours, theirs = [], []
    for source in sources:
        run_monai = monai_chain(source, config, work)
        run_monai()  # warm-up: imports and page cache, for both
        preprocess_patient(source, config)
        ours.append(
            min(seconds(lambda s=source: preprocess_patient(s, config)) for _ in range(repeats))
        )
        theirs.append(min(seconds(run_monai) for _ in range(repeats)))
    print(f"{label}: per patient ours {' '.join(f'{t:.3f}' for t in ours)} s")
    print(f"{label}: per patient MONAI {' '.join(f'{t:.3f}' for t in theirs)} s")
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(
        f"{label}: median ours {statistics.median(ours):.3f} s vs MONAI chain "
        f"{statistics.median(theirs):.3f} s; ratio ours/MONAI {ratio:.2f} (target <= 1.0; "
        "ours also reads and rasterises the RTSTRUCT, which the MONAI chain skips)"
    )
    return statistics.median(ours)


def cache_figures(sources, config, work: Path, uncached_s: float) -> None:
    import diskcache

    with VolumeCache(work / "cache") as cache:
        keys = []
        for source in sources:
            result = preprocess_patient(source, config)
            key = cache_key(source, config)
            cache.put(key, source.patient_id, result.image, result.mask, {})
            keys.append(key)
        cached = statistics.median(
            seconds(lambda k=key: [np.array(a) for a in cache.get(k).load()]) for key in keys
        )
        mapped = statistics.median(
            seconds(lambda k=key: cache.get(k, verify=False).load()[0][0].sum()) for key in keys
        )
    pickled_store = diskcache.Cache(str(work / "pickled"))
    for key, source in zip(keys, sources, strict=True):
        result = preprocess_patient(source, config)
        pickled_store[key] = (result.image, result.mask)
    pickled = statistics.median(seconds(lambda k=key: pickled_store[k]) for key in keys)
    pickled_store.close()
    print(
        f"cache: uncached (DICOM -> input) {uncached_s:.3f} s, cached load with CRC check "
        f"{cached * 1000:.1f} ms: {uncached_s / cached:.0f}x faster (target >= 20x)"
    )
    print(
        f"cache store: .npy memory map, first slice only {mapped * 1000:.2f} ms; "
        f"arrays pickled in diskcache {pickled * 1000:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        synth = replace(SynthConfig(), n_patients=args.patients, defects="none")
        write_cohort(synth, work / "demo", show_progress=False)
        run_cohort(
            work / "demo/dicom",
            work / "demo/clinical.csv",
            work / "demo/cohort",
            CohortConfig(),
            show_progress=False,
        )
        sources = cohort_sources(work / "demo/cohort")
        demo_s = compare("demo preset, synthetic demo patients", sources, PRESETS["demo"], work)
        cache_figures(sources, PRESETS["demo"], work, demo_s)
        if LUNG1_CASE.exists():
            with tarfile.open(LUNG1_CASE, "r:xz") as tar:
                tar.extractall(work / "lung1", filter="data")
            run_cohort(
                work / "lung1",
                LUNG1_CLINICAL,
                work / "lung1_cohort",
                CohortConfig(),
                show_progress=False,
            )
            lung1 = cohort_sources(work / "lung1_cohort")
            compare("paper preset, real LUNG1-001", lung1, PRESETS["paper"], work, repeats=2)
            peak = peak_memory_mb(work / "lung1_cohort", "paper")
            print(
                f"peak RSS of one worker, LUNG1-001 at the paper preset: {peak:.0f} MB "
                "(target < 2048 MB)"
            )


if __name__ == "__main__":
    main()
