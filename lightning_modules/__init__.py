"""The model families, registered by name in `MODELS` (see lightning_modules/family.py for the protocol).

Each line below registers one family: its LightningModule (in `MODELS`), and, through the family package's
own imports, its datamodule and readers (in `datamodules.DATAMODULES` / `datamodules.READERS`).
"""

from lightning_modules import (
    gp2,  # noqa: F401  (GP2: geometry-preserving depth)
    rgpd,  # noqa: F401  (RGPD: robust geometry-preserving depth by differentiable rendering)
    ssl,  # noqa: F401  (SSL point clouds: self-supervised shape and pose networks)
    ttp,  # noqa: F401  (TTP: correspondence-driven mesh reconstruction)
)
from lightning_modules.family import MODELS, FamilyModule

__all__ = ["MODELS", "FamilyModule"]
