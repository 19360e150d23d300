"""The RGPD family: `RGPDModule` (registered as model "rgpd") and its data, the depth datamodule and readers."""

import datamodules.depth  # noqa: F401  (registers the depth datamodule and readers)
from lightning_modules.rgpd.module import RGPDModule

__all__ = ["RGPDModule"]
