"""Depth family data: real-dataset readers, the synthetic scene generator, the mixed datamodule.

Importing this package registers the readers in `datamodules.READERS` and the datamodule as
`datamodules.DATAMODULES["depth"]`.
"""

from datamodules.depth import readers, readers_eval, synthetic  # noqa: F401  (registration)
from datamodules.depth.datamodule import DepthDataModule, collate_depth
from datamodules.depth.synthetic import SyntheticDepth, render_scene
from datamodules.mixing import MixedBatchSampler

__all__ = ["DepthDataModule", "MixedBatchSampler", "collate_depth", "SyntheticDepth", "render_scene"]
