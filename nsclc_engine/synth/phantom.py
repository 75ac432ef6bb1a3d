"""The synthetic chest CT of one patient: body, lungs, a lesion whose volume and
heterogeneity carry the image part of the true risk, and its contours."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nsclc_engine.cohort.contours import fill_polygon
from nsclc_engine.synth.outcome import CONTOUR_ANGLES, PatientTruth, SynthConfig


@dataclass(frozen=True)
class Grid:
    rows: int
    n_slices: int
    pixel_spacing_mm: float
    slice_thickness_mm: float
    origin_mm: tuple[float, float, float]

    def axis_mm(self, axis: str) -> np.ndarray:
        if axis == "z":
            return self.origin_mm[2] + self.slice_thickness_mm * np.arange(self.n_slices)
        start = self.origin_mm[0 if axis == "x" else 1]
        return start + self.pixel_spacing_mm * np.arange(self.rows)

    def to_pixel(self, x_mm: np.ndarray, y_mm: np.ndarray) -> np.ndarray:
        return np.stack(
            [
                (x_mm - self.origin_mm[0]) / self.pixel_spacing_mm,
                (y_mm - self.origin_mm[1]) / self.pixel_spacing_mm,
            ],
            axis=1,
        )


@dataclass(frozen=True)
class Lesion:
    """A lobulated ellipsoid: inside when ``|((p - c) / a)| <= 1 + e1 ((u.w)^2 - 1/3) + e2 u.v``."""

    centre_mm: np.ndarray
    semi_axes_mm: np.ndarray
    w: np.ndarray
    v: np.ndarray
    e1: float
    e2: float

    def normalised_radius(self, points_mm: np.ndarray) -> np.ndarray:
        """Radius relative to the surface along each point's direction (1 = on the surface)."""
        q = (points_mm - self.centre_mm) / self.semi_axes_mm
        d = np.linalg.norm(q, axis=-1)
        u = q / np.maximum(d, 1e-9)[..., None]
        surface = 1 + self.e1 * ((u @ self.w) ** 2 - 1 / 3) + self.e2 * (u @ self.v)
        return d / surface

    def slice_contour(self, z_mm: float) -> np.ndarray | None:
        """Star-shaped polygon ``(n, 2)`` (x, y mm) of the section at ``z_mm``, or None."""
        angles = np.linspace(0, 2 * np.pi, CONTOUR_ANGLES, endpoint=False)
        directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        reach = 1.5 * float(self.semi_axes_mm.max())
        radii = np.linspace(0, reach, int(reach / 0.1) + 1)
        xy = self.centre_mm[:2] + radii[None, :, None] * directions[:, None, :]
        points = np.concatenate([xy, np.full((*xy.shape[:2], 1), z_mm)], axis=2)
        inside = self.normalised_radius(points) <= 1.0
        if not inside[:, 0].all():
            return None
        first_outside = np.argmin(inside, axis=1)  # the shapes are star-shaped, so this is the exit
        first_outside[inside.all(axis=1)] = len(radii) - 1
        exit_radius = radii[np.maximum(first_outside - 1, 0)]
        if exit_radius.max() < 0.5:
            return None
        return self.centre_mm[:2] + exit_radius[:, None] * directions


def _make_lesion(rng: np.random.Generator, centre_mm: np.ndarray, volume_cm3: float) -> Lesion:
    anisotropy = rng.uniform(0.8, 1.25, 3)
    anisotropy /= np.prod(anisotropy) ** (1 / 3)
    radius = (3 * volume_cm3 * 1000 / (4 * np.pi)) ** (1 / 3)
    w, v = rng.normal(size=3), rng.normal(size=3)
    return Lesion(
        centre_mm,
        radius * anisotropy,
        w / np.linalg.norm(w),
        v / np.linalg.norm(v),
        float(rng.uniform(-0.25, 0.25)),
        float(rng.uniform(-0.15, 0.15)),
    )


@dataclass(frozen=True)
class RenderedPatient:
    hu: np.ndarray  # [z, y, x] int16
    grid: Grid
    rois: dict[str, dict[int, np.ndarray]]  # ROI name -> slice index -> polygon (n, 2) mm


def render_patient(config: SynthConfig, truth: PatientTruth) -> RenderedPatient:
    """Chest phantom with the tumour; contours are the exact boundaries of what is drawn."""
    rng = np.random.default_rng([config.seed, truth.number, 1])
    fov = config.rows * config.pixel_spacing_mm
    grid = Grid(
        config.rows,
        config.n_slices,
        config.pixel_spacing_mm,
        config.slice_thickness_mm,
        (
            -(config.rows - 1) / 2 * config.pixel_spacing_mm,
            -(config.rows - 1) / 2 * config.pixel_spacing_mm + float(rng.uniform(-10, 10)),
            float(rng.uniform(-450.0, -350.0)),
        ),
    )
    x, y, z = grid.axis_mm("x"), grid.axis_mm("y"), grid.axis_mm("z")
    depth = z[-1] - z[0]
    body_a, body_b = 0.42 * fov * rng.uniform(0.9, 1.02), 0.30 * fov * rng.uniform(0.9, 1.05)
    lung_a, lung_b = 0.33 * body_a, 0.72 * body_b
    lung_cx, lung_cy = 0.47 * body_a, -0.08 * body_b
    lung_top = z[0] + depth * rng.uniform(0.85, 0.97)

    yy, xx = np.meshgrid(y, x, indexing="ij")
    body = (xx / body_a) ** 2 + (yy / body_b) ** 2 <= 1
    fat = body & ((xx / (0.93 * body_a)) ** 2 + (yy / (0.91 * body_b)) ** 2 > 1)
    spine = (xx / (0.11 * body_b)) ** 2 + ((yy - 0.68 * body_b) / (0.11 * body_b)) ** 2 <= 1
    base = np.where(body, 40.0, -1000.0)
    base[fat] = -100.0
    base[spine] = 700.0
    hu = np.repeat(base[None], len(z), axis=0)
    rois: dict[str, dict[int, np.ndarray]] = {"Lung R": {}, "Lung L": {}}
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    for k, z_mm in enumerate(z):
        taper = np.sqrt(max(0.0, 1 - ((z_mm - z[0]) / (lung_top - z[0]) - 0.35) ** 2 / 0.65**2))
        if taper < 0.15:
            continue
        for name, side in (("Lung R", -1), ("Lung L", 1)):
            a, b = lung_a * taper, lung_b * taper
            polygon = np.stack(
                [side * lung_cx + a * np.cos(angles), lung_cy + b * np.sin(angles)], 1
            )
            rois[name][k] = polygon
            inside = fill_polygon(grid.to_pixel(polygon[:, 0], polygon[:, 1]), hu.shape[1:])
            hu[k][inside] = -850.0

    # the tumour sits in the middle of one lung, away from the top and bottom of the scan
    side = 1 if rng.random() < 0.5 else -1
    gtv = _make_lesion(rng, np.zeros(3), truth.volume_cm3)
    reach_z = 1.3 * float(gtv.semi_axes_mm[2])
    z_low, z_high = (
        z[0] + reach_z + 2 * grid.slice_thickness_mm,
        z[-1] - reach_z - 2 * grid.slice_thickness_mm,
    )
    centre = np.array(
        [
            side * lung_cx + rng.uniform(-0.2, 0.2) * lung_a,
            lung_cy + rng.uniform(-0.25, 0.25) * lung_b,
            rng.uniform(z_low, z_high) if z_high > z_low else (z[0] + z[-1]) / 2,
        ]
    )
    lesions = {"GTV-1": Lesion(centre, gtv.semi_axes_mm, gtv.w, gtv.v, gtv.e1, gtv.e2)}
    if truth.has_gtv2:
        node_centre = np.array(
            [-side * lung_cx, lung_cy + 0.3 * lung_b, centre[2] + rng.uniform(-20, 20)]
        )
        lesions["GTV-2"] = _make_lesion(rng, node_centre, float(rng.uniform(1.0, 4.0)))

    texture = _smooth_noise(rng, hu.shape)
    for name, lesion in lesions.items():
        rois[name] = {}
        for k, z_mm in enumerate(z):
            polygon = lesion.slice_contour(float(z_mm))
            if polygon is None:
                continue
            rois[name][k] = polygon
            inside = fill_polygon(grid.to_pixel(polygon[:, 0], polygon[:, 1]), hu.shape[1:])
            points = np.stack([xx[inside], yy[inside], np.full(inside.sum(), z_mm)], axis=1)
            core = np.clip(1 - lesion.normalised_radius(points) / 0.6, 0, 1)
            h = truth.heterogeneity if name == "GTV-1" else 0.2
            hu[k][inside] = 30.0 - 160.0 * h * core + (8.0 + 70.0 * h) * texture[k][inside]
    rois["PTV-1"] = {
        k: _expand(polygon, lesions["GTV-1"].centre_mm[:2], 10.0)
        for k, polygon in rois["GTV-1"].items()
    }

    hu += rng.normal(0.0, config.noise_hu, hu.shape)
    hu = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    return RenderedPatient(hu, grid, rois)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(rng.normal(size=shape), sigma=1.0)
    return noise / noise.std()


def _expand(polygon: np.ndarray, centre_xy: np.ndarray, margin_mm: float) -> np.ndarray:
    offset = polygon - centre_xy
    radius = np.linalg.norm(offset, axis=1, keepdims=True)
    return centre_xy + offset * (radius + margin_mm) / np.maximum(radius, 1e-9)
