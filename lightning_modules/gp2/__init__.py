"""The GP2 family: `GP2Module` (registered as model "gp2"), `load_official` (GP2's released weights) and its
data, the depth datamodule and readers."""

import datamodules.depth  # noqa: F401  (registers the depth datamodule and readers)
from lightning_modules.gp2.module import GP2Module
from lightning_modules.gp2.official import load_official

__all__ = ["GP2Module", "load_official"]
