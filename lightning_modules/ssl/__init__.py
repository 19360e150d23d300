"""SSL point clouds (Navaneet et al., CVPR 2020): networks, metrics and the LightningModule of the family.

Importing this package registers the model `MODELS["ssl_pointcloud"]` and, through `datamodules.pointcloud`,
the datamodule `DATAMODULES["point_cloud"]` and its readers.
"""

import datamodules.pointcloud  # noqa: F401  (registers DATAMODULES["point_cloud"] and its readers)
from lightning_modules.ssl.module import SSLModule

__all__ = ["SSLModule"]
