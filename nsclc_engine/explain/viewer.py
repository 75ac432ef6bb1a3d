"""The per-patient case viewer's computation: the original CT and GTV of one patient, the network
input it became (an RGB image of any of its slices with GTV and heat map), and the payload the
browser's case viewer draws axial, coronal and sagittal planes from (:func:`case_payload`:
the CT around the tumour, its GTV and attribution maps, compressed). The patient page only
lays these out.

Planes are shown the radiological way: axial with the patient's right on the viewer's left and
anterior at the top; coronal and sagittal with the head at the top, rows stretched by the slice
spacing so millimetres are square. Only PatientID and the clinical fields of
:data:`CLINICAL_FIELDS` are ever returned for display (no names, birth dates or other PHI).
"""

from __future__ import annotations

import base64
import os
import zlib
from dataclasses import dataclass

import numpy as np

from nsclc_engine.explain.gradcam import CtMap
from nsclc_engine.preprocess.volumes import InputGeometry

PLANES = ("axial", "coronal", "sagittal")  # the CT array axis each plane cuts: 0, 1, 2
# (level, width) in HU: OHIF's default CT presets, in its order
# (extensions/cornerstone/src/components/WindowLevelActionMenu/defaultWindowLevelPresets.ts)
WINDOW_PRESETS = {
    "soft tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "liver": (90.0, 150.0),
    "bone": (480.0, 2500.0),
    "brain": (40.0, 80.0),
}
FIRST_WINDOW = "lung"  # a lung tumour's case opens in the lung window
CLINICAL_FIELDS = (
    "age_years",
    "gender",
    "histology",
    "t_stage",
    "n_stage",
    "m_stage",
    "overall_stage",
    "survival_time_days",
    "deadstatus_event",
    "os_2y",
    "gtv_volume_cm3",
)
CONTOUR_RGB = np.array([0, 230, 64], dtype=np.float32)
CROSSHAIR_RGB = np.array([255, 200, 0], dtype=np.float32)
# "inferno"-like heat colours at 0, .25, .5, .75, 1
HEAT_ANCHORS = np.array(
    [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float32
)


@dataclass(frozen=True)
class PatientCase:
    """One patient as the viewer needs it: CT in HU and GTV on the CT grid, the network input
    and its mask, the geometry between them, and the displayable clinical fields."""

    patient_id: str
    hu: np.ndarray
    gtv: np.ndarray
    spacing_mm: tuple[float, float, float]
    geometry: InputGeometry
    input_image: np.ndarray
    input_mask: np.ndarray
    clinical: dict

    @property
    def superior_first(self) -> bool:
        """True when the slice index grows towards the head (then rows flip for display)."""
        return float(np.asarray(self.geometry.ct_direction)[2][2]) > 0


def gtv_centroid_index(mask: np.ndarray) -> tuple[int, int, int]:
    """The GTV's centroid as the nearest voxel index (z, y, x): where the viewer starts."""
    points = np.nonzero(mask)
    if not len(points[0]):
        return tuple(int(n // 2) for n in np.shape(mask))
    return tuple(round(float(axis.mean())) for axis in points)


def contour(mask2d: np.ndarray) -> np.ndarray:
    """Boundary pixels of a 2D mask: inside, with at least one 4-neighbour outside."""
    mask2d = np.asarray(mask2d, dtype=bool)
    padded = np.pad(mask2d, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & mask2d
    return mask2d & ~interior


def heat_colours(values: np.ndarray) -> np.ndarray:
    """``values`` in [0, 1] -> RGB float32 ``(..., 3)`` on the heat scale."""
    position = np.clip(np.asarray(values, dtype=np.float32), 0, 1) * (len(HEAT_ANCHORS) - 1)
    low = np.minimum(np.floor(position).astype(int), len(HEAT_ANCHORS) - 2)
    weight = (position - low)[..., None]
    return HEAT_ANCHORS[low] * (1 - weight) + HEAT_ANCHORS[low + 1] * weight


def render(
    gray: np.ndarray,
    mask: np.ndarray | None = None,
    heat: np.ndarray | None = None,
    opacity: float = 0.4,
    crosshair: tuple[int | None, int | None] = (None, None),
    row_scale: float = 1.0,
) -> np.ndarray:
    """An RGB ``uint8`` image of one plane.

    ``gray`` in [0, 1]; ``mask``: the GTV, drawn as its contour; ``heat`` in [0, 1], blended with
    alpha ``opacity * heat`` (cold voxels stay clear); ``crosshair``: (row, column) of the lines,
    in unstretched pixels; ``row_scale``: row spacing / column spacing (rows are repeated or
    dropped, nearest, so millimetres come out square).
    """
    gray = np.clip(np.asarray(gray, dtype=np.float32), 0, 1)
    rgb = np.repeat(gray[..., None] * 255.0, 3, axis=-1)
    if heat is not None:
        heat = np.clip(np.asarray(heat, dtype=np.float32), 0, 1)
        alpha = (float(opacity) * heat)[..., None]
        rgb = rgb * (1 - alpha) + heat_colours(heat) * alpha
    if mask is not None:
        rgb[contour(mask)] = CONTOUR_RGB
    row, column = crosshair
    if row is not None and 0 <= row < rgb.shape[0]:
        rgb[row] = 0.4 * rgb[row] + 0.6 * CROSSHAIR_RGB
    if column is not None and 0 <= column < rgb.shape[1]:
        rgb[:, column] = 0.4 * rgb[:, column] + 0.6 * CROSSHAIR_RGB
    if row_scale != 1.0:
        rows = max(1, round(rgb.shape[0] * row_scale))
        source = np.minimum(((np.arange(rows) + 0.5) / row_scale).astype(int), rgb.shape[0] - 1)
        rgb = rgb[source]
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def input_slice_for(case: PatientCase, z_index: int) -> int:
    """The axial slice of the network input nearest to CT slice ``z_index`` (clipped)."""
    k = (z_index - case.geometry.offset_zyx[0]) / case.geometry.scale_zyx[0]
    return int(np.clip(round(k), 0, case.input_image.shape[0] - 1))


def input_covers(case: PatientCase, z_index: int) -> bool:
    """Whether CT slice ``z_index`` lies within the network input's field of view."""
    k = (z_index - case.geometry.offset_zyx[0]) / case.geometry.scale_zyx[0]
    return -0.5 <= k <= case.input_image.shape[0] - 0.5


def view_input(
    case: PatientCase,
    k: int,
    heat: np.ndarray | None = None,
    opacity: float = 0.4,
    show_gtv: bool = True,
) -> np.ndarray:
    """Axial slice ``k`` of what the network saw (already windowed to [0, 1] by preprocessing),
    with the input's GTV mask and an input-space heat map."""
    mask = case.input_mask[k] if show_gtv else None
    heat2d = None if heat is None else heat[k]
    scale = case.geometry.scale_zyx
    spacing = case.spacing_mm
    row_scale = (scale[1] * spacing[1]) / (scale[2] * spacing[2])
    return render(case.input_image[k], mask, heat2d, opacity, (None, None), row_scale)


def viewer_box(case: PatientCase, margin_mm: float) -> tuple[int, int, int, int, int, int]:
    """The CT voxels the case viewer sends (z0, z1, y0, y1, x0, x1): the network input's crop
    box and the GTV, widened by ``margin_mm`` on every side and clipped to the CT."""
    box = np.asarray(case.geometry.crop_box_zyx, dtype=int).reshape(3, 2)
    points = np.nonzero(case.gtv)
    if len(points[0]):
        box[:, 0] = np.minimum(box[:, 0], [int(p.min()) for p in points])
        box[:, 1] = np.maximum(box[:, 1], [int(p.max()) + 1 for p in points])
    margin = np.ceil(margin_mm / np.asarray(case.spacing_mm, dtype=float)).astype(int)
    box[:, 0] = np.maximum(box[:, 0] - margin, 0)
    box[:, 1] = np.minimum(box[:, 1] + margin, case.hu.shape)
    return tuple(int(v) for v in box.ravel())


def _packed(array: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(np.ascontiguousarray(array).tobytes(), 6)).decode()


def case_payload(
    case: PatientCase,
    maps: dict[str, CtMap] | None = None,
    margin_mm: float = 30.0,
    max_pixels: int = 384,
) -> dict:
    """What the browser's case viewer draws from, so that a slice change needs no server
    round trip: the CT around the tumour (:func:`viewer_box`) as int16 HU, the GTV as uint8,
    and each named attribution map (``maps``: label -> map on the CT) as uint8 0-255, each
    zlib-compressed and base64-encoded, C order (z, y, x); in-plane every ``stride``-th voxel
    so neither side exceeds ``max_pixels``. ``origin`` is the box's first CT voxel, ``start``
    the GTV centroid in the box's voxels, ``spacing_mm`` the sent grid's spacing."""
    z0, z1, y0, y1, x0, x1 = viewer_box(case, margin_mm)
    stride = max(1, int(np.ceil(max(y1 - y0, x1 - x0) / max_pixels)))
    region = (slice(z0, z1), slice(y0, y1, stride), slice(x0, x1, stride))
    hu = np.clip(np.round(case.hu[region]), -32768, 32767).astype("<i2")
    gtv = case.gtv[region].astype(np.uint8)
    sent_maps = []
    for label, found in (maps or {}).items():
        heat = np.clip(found.full()[region], 0.0, 1.0)
        sent_maps.append({"label": label, "data": _packed(np.round(heat * 255).astype(np.uint8))})
    centre = (np.asarray(gtv_centroid_index(case.gtv)) - [z0, y0, x0]) // [1, stride, stride]
    centre = np.clip(centre, 0, np.asarray(hu.shape) - 1)
    spacing = case.spacing_mm
    return {
        "patient_id": case.patient_id,
        "shape": list(hu.shape),
        "origin": [z0, y0, x0],
        "stride": stride,
        "ct_shape": list(case.hu.shape),
        "spacing_mm": [float(spacing[0]), float(spacing[1]) * stride, float(spacing[2]) * stride],
        "superior_first": bool(case.superior_first),
        "start": [int(v) for v in centre],
        "ct": _packed(hu),
        "gtv": _packed(gtv),
        "maps": sent_maps,
        "windows": {name: list(window) for name, window in WINDOW_PRESETS.items()},
        "window_index": list(WINDOW_PRESETS).index(FIRST_WINDOW),
        "heat_lut": np.round(heat_colours(np.linspace(0, 1, 256))).astype(int).tolist(),
        "contour_rgb": CONTOUR_RGB.astype(int).tolist(),
    }


def unpack(payload: dict, field: str, dtype: str, index: int | None = None) -> np.ndarray:
    """One array of :func:`case_payload` back as numpy (``field`` "ct", "gtv", or "maps" with
    ``index``): what the browser decodes."""
    packed = payload[field] if index is None else payload[field][index]["data"]
    raw = zlib.decompress(base64.b64decode(packed))
    return np.frombuffer(raw, dtype=dtype).reshape(payload["shape"])


def clinical_fields(row: dict) -> dict:
    """The displayable clinical fields of a cohort row (nothing else, so no PHI)."""
    return {key: row[key] for key in CLINICAL_FIELDS if key in row}


def load_case(
    cohort_dir: str | os.PathLike,
    cache_dir: str | os.PathLike,
    preprocess: dict,
    patient_id: str,
) -> PatientCase:
    """Read one patient of a cohort folder: CT and GTV from DICOM, the network input from the
    volume cache (recomputed and stored when the entry is missing)."""
    from nsclc_engine.cohort.build import load_cohort
    from nsclc_engine.preprocess.cache import VolumeCache
    from nsclc_engine.preprocess.volumes import (
        PreprocessConfig,
        cache_key,
        cohort_sources,
        preprocess_ct,
        read_source,
        store,
    )

    sources = {source.patient_id: source for source in cohort_sources(cohort_dir)}
    if patient_id not in sources:
        raise ValueError(f"{patient_id}: not in the cohort at {cohort_dir}")
    source = sources[patient_id]
    config = PreprocessConfig(**preprocess)
    volume, gtv = read_source(source)
    with VolumeCache(cache_dir) as cache:
        key = cache_key(source, config)
        entry = cache.get(key)
        if entry is not None:
            image, mask = (np.asarray(a) for a in entry.load(mmap=False))
            geometry = InputGeometry.from_dict(entry.metadata["geometry"])
        else:
            result = preprocess_ct(volume, gtv, config)
            image, mask, geometry = result.image, result.mask, result.geometry
            store(cache, key, patient_id, result, preprocess)
    cohort = load_cohort(cohort_dir).set_index("patient_id")
    row = cohort.loc[patient_id].to_dict() if patient_id in cohort.index else {}
    return PatientCase(
        patient_id,
        volume.hu,
        gtv,
        tuple(volume.geometry.spacing_mm),
        geometry,
        image,
        mask,
        clinical_fields(row),
    )
