"""Rasterise planar RTSTRUCT contours onto a CT grid (pure NumPy, no file I/O).

Rules, chosen to match what treatment-planning systems and pyradiomics-style converters do:

* a voxel belongs to a polygon when its centre lies inside it (even-odd rule);
* contours of one ROI that lie in the same plane are combined with XOR, so a contour drawn
  inside another one is a hole;
* each contour plane is assigned to the nearest CT slice; planes that fall between CT slices
  (contours drawn on a finer grid than the CT) are OR-ed into that slice, never XOR-ed, so two
  neighbouring planes cannot cancel each other out;
* planes farther than half a slice outside the volume are dropped and reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RasterisedRoi:
    """Boolean mask ``[z, y, x]`` on the CT grid and what could not be placed on it."""

    mask: np.ndarray
    n_contours_used: int
    n_contours_degenerate: int
    n_contours_outside: int


def fill_polygon(vertices_xy: np.ndarray, shape_yx: tuple[int, int]) -> np.ndarray:
    """Boolean ``[y, x]`` mask of the pixels whose centres are inside a closed polygon.

    ``vertices_xy`` is ``(n, 2)`` in continuous pixel coordinates (x = column, y = row, pixel
    centres at integers). Even-odd rule; the polygon is closed implicitly.
    """
    mask = np.zeros(shape_yx, dtype=bool)
    vertices = np.asarray(vertices_xy, dtype=np.float64)
    if vertices.ndim != 2 or vertices.shape[1] != 2 or len(vertices) < 3:
        return mask
    x0, y0 = vertices[:, 0], vertices[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    n_rows, n_cols = shape_yx
    row_first = max(int(np.ceil(y0.min())), 0)
    row_last = min(int(np.floor(y0.max())), n_rows - 1)
    if row_first > row_last:
        return mask
    columns = np.arange(n_cols, dtype=np.float64)
    for row in range(row_first, row_last + 1):
        # half-open rule on edge end points: an edge counts when the scan line is in
        # [min(y0, y1), max(y0, y1)), so vertices on the line are counted exactly once
        crossing = (y0 <= row) != (y1 <= row)
        if not crossing.any():
            continue
        t = (row - y0[crossing]) / (y1[crossing] - y0[crossing])
        x_cross = np.sort(x0[crossing] + t * (x1[crossing] - x0[crossing]))
        inside_count = np.searchsorted(x_cross, columns, side="right")
        mask[row] = inside_count % 2 == 1
    return mask


def rasterise_contours(
    contours_voxel: list[np.ndarray], shape_zyx: tuple[int, int, int]
) -> RasterisedRoi:
    """Rasterise contours given in continuous voxel coordinates ``(n, 3)`` as (x, y, z).

    Returns the mask ``[z, y, x]``; see the module docstring for the rules.
    """
    n_slices = shape_zyx[0]
    planes: dict[float, list[np.ndarray]] = {}
    degenerate = outside = 0
    for points in contours_voxel:
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[0] < 3 or points.shape[1] != 3:
            degenerate += 1
            continue
        if _polygon_area(points[:, :2]) <= 0.0:
            degenerate += 1
            continue
        plane_z = round(float(points[:, 2].mean()), 3)
        if plane_z < -0.5 or plane_z > n_slices - 0.5:
            outside += 1
            continue
        planes.setdefault(plane_z, []).append(points[:, :2])

    mask = np.zeros(shape_zyx, dtype=bool)
    used = 0
    for plane_z, polygons in planes.items():
        slice_index = min(max(int(np.floor(plane_z + 0.5)), 0), n_slices - 1)
        plane_mask = np.zeros(shape_zyx[1:], dtype=bool)
        for polygon in polygons:
            plane_mask ^= fill_polygon(polygon, shape_zyx[1:])
        mask[slice_index] |= plane_mask
        used += len(polygons)
    return RasterisedRoi(mask, used, degenerate, outside)


def _polygon_area(vertices_xy: np.ndarray) -> float:
    x, y = vertices_xy[:, 0], vertices_xy[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def gtv_columns(geometry, hu: np.ndarray, mask: np.ndarray) -> dict:
    """The CT's shape and spacing and the GTV's size, mean HU, box (voxel indices, end
    exclusive) and centroid (patient mm), from its mask on the CT ``hu``; ``geometry``: the
    series' (``cohort.dicom_io.SeriesGeometry``)."""
    gtv_voxels = int(mask.sum())
    zyx = np.nonzero(mask)
    bbox = [(int(axis.min()), int(axis.max()) + 1) for axis in zyx]
    centroid_index_xyz = np.array([zyx[2].mean(), zyx[1].mean(), zyx[0].mean()])
    centroid_mm = geometry.voxel_to_patient(centroid_index_xyz[None])[0]
    return {
        "shape_z": geometry.shape_zyx[0],
        "shape_y": geometry.shape_zyx[1],
        "shape_x": geometry.shape_zyx[2],
        "spacing_z_mm": geometry.spacing_mm[0],
        "spacing_y_mm": geometry.spacing_mm[1],
        "spacing_x_mm": geometry.spacing_mm[2],
        "gtv_voxels": gtv_voxels,
        "gtv_volume_cm3": gtv_voxels * geometry.voxel_volume_mm3 / 1000.0,
        "gtv_mean_hu": float(hu[mask].mean()),
        "gtv_bbox_z0": bbox[0][0],
        "gtv_bbox_z1": bbox[0][1],
        "gtv_bbox_y0": bbox[1][0],
        "gtv_bbox_y1": bbox[1][1],
        "gtv_bbox_x0": bbox[2][0],
        "gtv_bbox_x1": bbox[2][1],
        "gtv_centroid_x_mm": float(centroid_mm[0]),
        "gtv_centroid_y_mm": float(centroid_mm[1]),
        "gtv_centroid_z_mm": float(centroid_mm[2]),
    }
