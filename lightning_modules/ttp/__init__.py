"""The TTP family (To The Point, Kokkinos and Kokkinos 2021): `TTPModule` (registered as model "ttp") and its
data, the category datamodule and readers (CUB, PASCAL3D+, the synthetic deformable category)."""

import datamodules.category  # noqa: F401  (registers the category datamodule and readers)
from lightning_modules.ttp.module import TTPModule

__all__ = ["TTPModule"]
