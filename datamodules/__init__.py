"""LightningDataModules and dataset readers, registered by name in `DATAMODULES` and `READERS`.

from datamodules import READERS
nyu_test = READERS["nyu"](root="/data/nyu", split="test")
"""

import datamodules.depth  # noqa: F401  (registers the depth readers and datamodule)
from datamodules.registry import DATAMODULES, READERS

__all__ = ["READERS", "DATAMODULES"]
