"""Category (TTP) family data: the synthetic deformable category, the crop, the datamodule.

Importing this package registers the readers `datamodules.READERS["synthetic_category"]`, `["cub"]` and
`["pascal3d"]` (readers.py) and the datamodule `datamodules.DATAMODULES["category"]`.
"""

from datamodules.category import readers, synthetic  # noqa: F401  (registration)
from datamodules.category.crop import crop_box, crop_image, crop_sample, mirror_sample, pixels_to_crop
from datamodules.category.datamodule import CategoryDataModule, TransformedCategory, collate_category
from datamodules.category.synthetic import (
    KEYPOINT_NAMES,
    BirdTemplate,
    SyntheticCategory,
    bird_template,
    save_template,
)

__all__ = [
    "KEYPOINT_NAMES",
    "BirdTemplate",
    "CategoryDataModule",
    "SyntheticCategory",
    "TransformedCategory",
    "bird_template",
    "collate_category",
    "crop_box",
    "crop_image",
    "crop_sample",
    "mirror_sample",
    "pixels_to_crop",
    "save_template",
]
