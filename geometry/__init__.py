"""Differentiable geometry for single-view 3D reconstruction, in pure PyTorch, with PyTorch3D's names and
conventions (row-vector points X_view = X_world @ R + T; +X left, +Y up, +Z into the screen; NDC [-1, 1]
on the shorter image side). Padded tensors (+ optional lengths) stand in for Meshes/Pointclouds objects.
Depends on torch (numpy/scipy for file I/O and exact EMD) and on nothing else of the project.

    rotations     axis-angle / matrix / quaternion / 6D conversions, so3 exp/log, relative angle
    cameras       look_at_view_transform, FoV and focal-length (Perspective/Orthographic) cameras,
                  intrinsics, weak perspective, NDC <-> pixel <-> normalized image coordinates
    depth         depth-map unprojection / projection with intrinsics K
    depth_align   per-image scale (median) and scale-and-shift (least squares) alignment
    mesh_raster   rasterize_meshes (binned, memory bounded) -> Fragments
    mesh_shading  soft silhouettes, RGB blending, vertex colours, UV and image textures, visibility
    point_raster  rasterize_points, compositors, CAPNet / DIFFER projections, novel-view depth rendering
    pointcloud    knn_points, chamfer_distance (+ literature variants), exact and approximate EMD,
                  global rotation fit
    mesh, mesh_io, mesh_losses, voxel   ico_sphere, .obj, Laplacians, smoothing/edge/normal/ARAP losses,
                  normals, subdivision, surface sampling, voxelization and 3D IoU
    ttp_layer     TTP's differentiable camera-and-deformation fit (fit_camera_and_deformation): batched
                  Gauss-Newton on SO(3) or the paper's L-BFGS, implicit gradients, closed-form ridge (Eq. 7)
    backend       "torch" or "pytorch3d" for the rasterizers and knn
"""

from geometry.backend import get_backend, pytorch3d_available, set_backend
from geometry.cameras import (
    FoVOrthographicCameras,
    FoVPerspectiveCameras,
    IntrinsicsCameras,
    LookAt,
    OrthographicCameras,
    PerspectiveCameras,
    WeakPerspectiveCameras,
    camera_position_from_spherical_angles,
    focal_from_fov,
    image_coords_to_ndc,
    image_hw,
    intrinsics_from_fov,
    look_at_rotation,
    look_at_view_transform,
    ndc_pixel_centers,
    ndc_to_image_coords,
    ndc_to_pixel,
    opencv_to_pytorch3d_view,
    pixel_index_to_ndc,
    pixel_to_ndc,
    pytorch3d_view_to_opencv,
    view_to_world,
    world_to_view,
)
from geometry.depth import Projection, Unprojection, project_points, unproject_depth, unproject_depth_fov
from geometry.depth_align import (
    Alignment,
    align_lstsq_scale_shift,
    align_median_depth_ratio,
    align_median_log_disparity,
    masked_median,
)
from geometry.mesh import (
    Mesh,
    cot_laplacian,
    face_areas,
    face_normals,
    face_verts,
    ico_sphere,
    mesh_edges,
    padded_from_lists,
    sample_points_from_meshes,
    subdivide_mesh,
    uniform_laplacian,
    vertex_normals,
)
from geometry.mesh_io import load_obj, save_obj
from geometry.mesh_losses import (
    arap_energy,
    mesh_edge_loss,
    mesh_laplacian_smoothing,
    mesh_normal_consistency,
)
from geometry.mesh_raster import Fragments, rasterize_meshes
from geometry.mesh_shading import (
    hard_rgb_blend,
    interpolate_face_attributes,
    mesh_soft_silhouette,
    sample_image_texture,
    sample_texture_uv,
    sample_vertex_colors,
    soft_silhouette,
    softmax_rgb_blend,
    vertex_visibility,
)
from geometry.point_raster import (
    PointFragments,
    alpha_composite,
    capnet_mask_projection,
    differ_feature_projection,
    norm_weighted_composite,
    rasterize_points,
    render_depth_novel_view,
)
from geometry.pointcloud import (
    KNN,
    chamfer_distance,
    chamfer_variant,
    emd_approx,
    emd_exact,
    fit_rotation_chamfer,
    knn_gather,
    knn_points,
)
from geometry.rotations import (
    axis_angle_to_matrix,
    axis_angle_to_quaternion,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rotation_6d,
    quaternion_to_axis_angle,
    quaternion_to_matrix,
    rotation_6d_to_matrix,
    so3_exp_map,
    so3_log_map,
    so3_relative_angle,
    so3_rotation_angle,
)
from geometry.ttp_layer import TTPFit, fit_camera_and_deformation, weak_perspective_scale
from geometry.voxel import voxel_iou, voxelize_mesh

__all__ = [name for name in dir() if not name.startswith("_") and name not in ("annotations",)]
