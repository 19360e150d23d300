"""The geometry package's contract: PyTorch3D's public names importable from `geometry`, and no import of
the rest of the project (it must be reusable without Lightning or the suite)."""

from __future__ import annotations

from helpers import modules_loaded_by

PYTORCH3D_NAMES = (
    "axis_angle_to_matrix matrix_to_axis_angle rotation_6d_to_matrix matrix_to_rotation_6d quaternion_to_matrix "
    "matrix_to_quaternion so3_relative_angle look_at_view_transform rasterize_meshes rasterize_points "
    "knn_points chamfer_distance cot_laplacian ico_sphere"
).split()


def test_public_names():
    import geometry

    missing = [n for n in PYTORCH3D_NAMES if not callable(getattr(geometry, n, None))]
    assert not missing, missing
    assert set(PYTORCH3D_NAMES) <= set(geometry.__all__)


def test_geometry_imports_nothing_else_of_the_project():
    above = ("losses", "datamodules", "lightning_modules", "experiments", "pytorch_lightning", "lightning")
    bad = modules_loaded_by("geometry", above)
    assert not bad, f"geometry imported: {bad}"
