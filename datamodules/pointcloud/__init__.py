"""Point-cloud (SSL) family data: the lineage's camera, the synthetic object classes, the ShapeNet (DRC) and
Pix3D readers, the datamodule.

Importing this package registers the readers `datamodules.READERS["synthetic_shapes"]` (synthetic.py),
`["shapenet_drc"]` and `["pix3d"]` (readers.py) and the datamodule `datamodules.DATAMODULES["point_cloud"]`.
"""

from datamodules.pointcloud import readers, synthetic  # noqa: F401  (registration)
from datamodules.pointcloud.camera import (
    CAMERA_DISTANCE,
    lineage_intrinsics,
    project,
    project_to_ndc,
    world2cam,
    world2cam_rotation,
)
from datamodules.pointcloud.datamodule import PointCloudDataModule, TransformedPointCloud, collate_point_cloud
from datamodules.pointcloud.readers import Pix3DReader, ShapeNetDRCReader
from datamodules.pointcloud.synthetic import SyntheticShapes, make_assembly, normalize_unit_diagonal

__all__ = [
    "CAMERA_DISTANCE",
    "Pix3DReader",
    "PointCloudDataModule",
    "ShapeNetDRCReader",
    "SyntheticShapes",
    "TransformedPointCloud",
    "collate_point_cloud",
    "lineage_intrinsics",
    "make_assembly",
    "normalize_unit_diagonal",
    "project",
    "project_to_ndc",
    "world2cam",
    "world2cam_rotation",
]
