"""How each pretrained encoder wants its input: the crop, the voxel size, the intensities.

- ``fmcib`` (Pai et al., Nat Mach Intell 2024): the CT resampled to 1 mm, a 50 mm cube centred
  on the tumour, intensities ``(HU + 1024) / 4096`` clipped to [0, 1]. That is FMCIB's own
  preprocessing (``fmcib/preprocessing/__init__.py``: ``ScaleIntensityRanged(a_min=-1024,
  a_max=3072, b_min=0, b_max=1, clip=True)``), whose range is 4096 HU wide. We centre on the
  GTV's centroid (FMCIB's annotations give a seed point within a few mm of it). Here it is
  the ``fixed_fov`` crop with ``fov_mm=50`` and a 50x50x50 output: 1 mm voxels, the cube's
  centre exactly on the centroid.
- ``medicalnet`` (Chen et al. 2019): the preset's tumour-centred field of view (150 mm) with
  every voxel z-scored per volume, as MedicalNet normalises its inputs.

Both go through the preprocessing stage, so the volumes are cached (and keyed) as any run's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from nsclc_engine.preprocess.volumes import PRESETS, PreprocessConfig

FMCIB_CUBE_MM = 50.0


@dataclass(frozen=True)
class Recipe:
    name: str
    preprocess: PreprocessConfig
    standardise: bool  # z-score each volume (MedicalNet) or take the unit window as it is
    networks: tuple[str, ...]  # the networks whose published weights expect this input
    description: str

    def network_input(self, image: np.ndarray) -> np.ndarray:
        """A cached volume (``[D, H, W]`` in [0, 1]) as the encoder takes it."""
        image = np.asarray(image, dtype=np.float32)
        if not self.standardise:
            return image
        spread = float(image.std())
        return (image - float(image.mean())) / (spread if spread > 0 else 1.0)


def recipe(name: str, preset: str = "demo") -> Recipe:
    """The recipe ``name`` (``fmcib`` or ``medicalnet``; the latter at ``preset``'s size)."""
    if name == "fmcib":
        cube = int(FMCIB_CUBE_MM)
        return Recipe(
            "fmcib",
            PreprocessConfig(
                crop_mode="fixed_fov",
                fov_mm=FMCIB_CUBE_MM,
                out_depth=cube,
                out_height=cube,
                out_width=cube,
                window_center_hu=1024.0,  # [-1024, 3072] HU -> [0, 1]
                window_width_hu=4096.0,
            ),
            standardise=False,
            networks=("fmcib",),
            description="1 mm voxels, a 50 mm cube at the GTV centroid, (HU + 1024) / 4096",
        )
    if name == "medicalnet":
        if preset not in PRESETS:
            raise ValueError(f"preset {preset!r}: choose one of {sorted(PRESETS)}")
        return Recipe(
            "medicalnet",
            replace(PRESETS[preset], crop_mode="fixed_fov"),
            standardise=True,
            networks=("resnet10", "resnet18", "resnet34", "resnet50"),
            description=f"the {preset} preset's 150 mm field of view at the GTV, z-scored",
        )
    raise ValueError(f"recipe {name!r}: choose fmcib or medicalnet")
