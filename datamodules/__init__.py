"""LightningDataModules and dataset readers, registered by name in `DATAMODULES` and `READERS`.

from datamodules import READERS
nyu_test = READERS["nyu"](root="/data/nyu", split="test")

Generic machinery shared by every family:
  schema.py        the sample schemas ("depth", "category", "point_cloud") and `check_sample`
  readers_base.py  `Reader`: base of the real-dataset readers (split / root checks, `check_files`)
  files.py         file helpers of the readers (roots, splits, images, PNGs, JSON, split lists)
  entries.py       config entries `{"reader": NAME, **kwargs}` -> readers, with the schema check
  mixing.py        `MixedBatchSampler`, `MixedDataset`, `TransformedDataset`: mixed train batches
  collate.py       `collate_samples`: batches of schema samples (stack, NaN-fill + has_<key>, lists)
  eval_loaders.py  val / test loaders that score each sample once under DDP
  base.py          `MixedDataModule`: the LightningDataModule a family subclasses (transforms + collate)
  seeding.py       `stable_seed`
  registry.py      the `READERS` and `DATAMODULES` registries
Families: depth/ (readers, synthetic scenes, `DepthDataModule`); category/ (TTP: CUB, PASCAL3D+, the
synthetic deformable category, `CategoryDataModule`); pointcloud/ (SSL point clouds: ShapeNet DRC
renderings, Pix3D, procedural object classes, `PointCloudDataModule`).
"""

import datamodules.category  # noqa: F401  (registers the category readers and datamodule)
import datamodules.depth  # noqa: F401  (registers the depth readers and datamodule)
import datamodules.pointcloud  # noqa: F401  (registers the point-cloud readers and datamodule)
from datamodules.registry import DATAMODULES, READERS

__all__ = ["READERS", "DATAMODULES"]
