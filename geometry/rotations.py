"""Rotation representations and SO(3) maps, with PyTorch3D's names, arguments and conventions.

Conventions (as `pytorch3d.transforms`):
* Rotation matrices act on **column** vectors: `R @ v` rotates `v` anticlockwise by the angle `|a|` about
  the axis `a / |a|` of the axis-angle vector `a` (Rodrigues). (Camera `R` in `geometry.cameras` multiplies
  row vectors instead: `X_view = X_world @ R + T`.)
* Quaternions are `(..., 4)` with the **real part first**, `(w, x, y, z)`.
* Leading dimensions `...` are arbitrary unless a docstring says `(N, ...)`.

Every function is differentiable, and every public function compiles with `torch.jit.script` (as PyTorch3D's,
see its tests/test_rotation_conversions.py and tests/test_so3.py `test_scriptable`); so the code here keeps to
the TorchScript subset (list[int] shapes, no nested functions, eager-only checks under `is_scripting`).
`matrix_to_axis_angle` goes through a quaternion whose largest component is recovered first (Shepperd's
method, "Quaternion from rotation matrix", J. Guidance and Control 1978), which keeps values and gradients
finite at angle 0 and near pi.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "axis_angle_to_matrix",
    "axis_angle_to_quaternion",
    "matrix_to_axis_angle",
    "matrix_to_quaternion",
    "matrix_to_rotation_6d",
    "quaternion_to_axis_angle",
    "quaternion_to_matrix",
    "rotation_6d_to_matrix",
    "so3_exp_map",
    "so3_log_map",
    "so3_relative_angle",
    "so3_rotation_angle",
    "standardize_quaternion",
]


# ----------------------------------------------------------------------------------------------- checks
def _check_last(x: torch.Tensor, name: str, dims: list[int], expected: str) -> None:
    if not torch.jit.is_scripting():
        if not torch.is_tensor(x):
            raise ValueError(f"Expected {name} to be a tensor of shape {expected}, got {type(x).__name__}")
    n = len(dims)
    if x.dim() < n or list(x.shape[x.dim() - n :]) != dims:
        raise ValueError(f"Expected {name} to be of shape {expected}, got {_shape_str(x)}")


def _check_batch(x: torch.Tensor, name: str, dims: list[int], expected: str) -> None:
    _check_last(x, name, dims, expected)
    if x.dim() != len(dims) + 1:
        raise ValueError(f"Expected {name} to be of shape {expected}, got {_shape_str(x)}")


def _shape_str(x: torch.Tensor) -> str:
    """ "(2, 3)" in eager mode and in TorchScript alike."""
    return "(" + ", ".join([str(d) for d in x.shape]) + ("," if x.dim() == 1 else "") + ")"


def _sinc(x: torch.Tensor) -> torch.Tensor:
    """sin(x) / x with value 1 and derivative 0 at x = 0 (torch.sinc is sin(pi x) / (pi x))."""
    return torch.sinc(x / math.pi)


# ------------------------------------------------------------------------------------------ quaternions
def standardize_quaternion(quaternions: torch.Tensor) -> torch.Tensor:
    """Flip quaternions to a non-negative real part (q and -q are the same rotation).

    Args:
        quaternions: (..., 4), real part first.
    Returns:
        (..., 4)
    """
    _check_last(quaternions, "quaternions", [4], "(..., 4)")
    return torch.where(quaternions[..., :1] < 0, -quaternions, quaternions)


def quaternion_to_matrix(quaternions: torch.Tensor) -> torch.Tensor:
    """Rotation matrices of quaternions (need not be unit: they are normalised implicitly).

    Args:
        quaternions: (..., 4), real part first.
    Returns:
        (..., 3, 3) rotation matrices (column-vector convention).
    """
    _check_last(quaternions, "quaternions", [4], "(..., 4)")
    w, x, y, z = quaternions.unbind(-1)
    s = 2.0 / (quaternions * quaternions).sum(-1)  # (...)
    rows = (
        1 - s * (y * y + z * z),
        s * (x * y - z * w),
        s * (x * z + y * w),
        s * (x * y + z * w),
        1 - s * (x * x + z * z),
        s * (y * z - x * w),
        s * (x * z - y * w),
        s * (y * z + x * w),
        1 - s * (x * x + y * y),
    )
    return torch.stack(rows, dim=-1).reshape(quaternions.shape[:-1] + (3, 3))


def _safe_sqrt_positive(x: torch.Tensor) -> torch.Tensor:
    """sqrt(max(x, 0)) whose gradient is 0 (not NaN) where x <= 0."""
    positive = x > 0
    return torch.where(
        positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), torch.zeros_like(x)
    )


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """Quaternions of rotation matrices, real part first and non-negative (PyTorch3D's output).

    Shepperd's method: of the four quaternion components, the one of largest magnitude is computed from the
    diagonal and the other three from the off-diagonal sums/differences divided by it, so no division is by
    a value below 1/2 for a rotation matrix.

    Args:
        matrix: (..., 3, 3) rotation matrices.
    Returns:
        (..., 4) quaternions (w, x, y, z) with w >= 0.
    """
    _check_last(matrix, "matrix", [3, 3], "(..., 3, 3)")
    m = matrix.reshape(matrix.shape[:-2] + (9,))
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m.unbind(-1)
    # r_k = 2 |q_k| for k = w, x, y, z (from 1 + trace = 4 w^2, etc.)
    r = _safe_sqrt_positive(
        torch.stack(
            [
                1.0 + m00 + m11 + m22,
                1.0 + m00 - m11 - m22,
                1.0 - m00 + m11 - m22,
                1.0 - m00 - m11 + m22,
            ],
            dim=-1,
        )
    )  # (..., 4)
    # row k: 4 q_k q = (4 q_k w, 4 q_k x, 4 q_k y, 4 q_k z), with 4 q_k^2 = r_k^2 on the diagonal
    cand = torch.stack(
        [
            torch.stack([r[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], dim=-1),
            torch.stack([m21 - m12, r[..., 1] ** 2, m10 + m01, m02 + m20], dim=-1),
            torch.stack([m02 - m20, m10 + m01, r[..., 2] ** 2, m12 + m21], dim=-1),
            torch.stack([m10 - m01, m20 + m02, m21 + m12, r[..., 3] ** 2], dim=-1),
        ],
        dim=-2,
    )  # (..., 4, 4)
    # divide row k by 4 q_k = 2 r_k (floored so that the unselected rows stay finite)
    cand = cand / (2.0 * r.clamp(min=0.1))[..., None]
    best = r.argmax(dim=-1, keepdim=True)  # (..., 1)
    idx = best[..., None].expand_as(cand[..., :1, :])  # (..., 1, 4)
    quat = torch.gather(cand, -2, idx).squeeze(-2)  # (..., 4)
    return standardize_quaternion(quat)


def axis_angle_to_quaternion(axis_angle: torch.Tensor) -> torch.Tensor:
    """Quaternions of axis-angle vectors.

    Args:
        axis_angle: (..., 3), direction = axis, norm = angle in radians.
    Returns:
        (..., 4) unit quaternions (w, x, y, z); w < 0 for angles above pi.
    """
    _check_last(axis_angle, "axis_angle", [3], "(..., 3)")
    angles = torch.linalg.vector_norm(axis_angle, dim=-1, keepdim=True)  # (..., 1)
    half = 0.5 * angles
    return torch.cat([torch.cos(half), axis_angle * 0.5 * _sinc(half)], dim=-1)


def quaternion_to_axis_angle(quaternions: torch.Tensor) -> torch.Tensor:
    """Axis-angle vectors of quaternions (angle = 2 atan2(|xyz|, w), in [0, 2 pi]).

    Args:
        quaternions: (..., 4), real part first.
    Returns:
        (..., 3)
    """
    _check_last(quaternions, "quaternions", [4], "(..., 4)")
    xyz = quaternions[..., 1:]
    norms = torch.linalg.vector_norm(xyz, dim=-1, keepdim=True)  # (..., 1)
    half = torch.atan2(norms, quaternions[..., :1])  # (..., 1)
    return xyz / (0.5 * _sinc(half))


# ----------------------------------------------------------------------------------------- axis-angle
def _hat(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrices, hat(v) @ u = v x u."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(v.shape + (3,))


def axis_angle_to_matrix(axis_angle: torch.Tensor, fast: bool = False) -> torch.Tensor:
    """Rotation matrices of axis-angle vectors.

    Args:
        axis_angle: (..., 3), direction = axis, norm = angle in radians.
        fast: use Rodrigues' formula `I + sin(t)/t K + (1 - cos t)/t^2 K^2` directly instead of the
            quaternion route. Both are exact; they differ by rounding.
    Returns:
        (..., 3, 3) rotation matrices (column-vector convention).
    """
    _check_last(axis_angle, "axis_angle", [3], "(..., 3)")
    if not fast:
        return quaternion_to_matrix(axis_angle_to_quaternion(axis_angle))
    t = torch.linalg.vector_norm(axis_angle, dim=-1)[..., None, None]  # (..., 1, 1)
    k = _hat(axis_angle)  # (..., 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    # (1 - cos t) / t^2 = 0.5 * (sin(t/2) / (t/2))^2, stable at t = 0
    return eye + _sinc(t) * k + 0.5 * _sinc(0.5 * t) ** 2 * (k @ k)


def _matrix_to_axis_angle_direct(matrix: torch.Tensor) -> torch.Tensor:
    """Axis-angle from the skew part and the trace; near pi, the axis comes from (R + I) / 2 = n n^T."""
    m = matrix
    omega = torch.stack(
        [m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], dim=-1
    )  # (..., 3) = 2 sin(t) n
    sin2 = torch.linalg.vector_norm(omega, dim=-1, keepdim=True)  # 2 sin t
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    angles = torch.atan2(sin2, (trace - 1)[..., None])  # (..., 1) in [0, pi]
    generic = 0.5 * omega / _sinc(angles)
    # near pi: n n^T = (R + R^T) / 4 + (1 - cos t)/2 ... use the column with the largest diagonal of
    # S = (R + R^T)/2 - cos(t) I = (1 - cos t) n n^T, then the sign from omega.
    eye = torch.eye(3, dtype=m.dtype, device=m.device)
    cos_t = torch.cos(angles)[..., None]  # (..., 1, 1)
    s = 0.5 * (m + m.transpose(-1, -2)) - cos_t * eye  # (..., 3, 3)
    col = torch.diagonal(s, dim1=-2, dim2=-1).argmax(-1)  # (...)
    v = torch.gather(s, -1, col[..., None, None].expand_as(s[..., :1])).squeeze(-1)  # (..., 3)
    n = F.normalize(v, dim=-1)
    sign = torch.where((n * omega).sum(-1, keepdim=True) < 0, -1.0, 1.0).to(m.dtype)
    near_pi = angles > 0.5 * math.pi  # here 1 - cos t >= 1: the symmetric part is well conditioned
    return torch.where(near_pi, sign * n * angles, generic)


def matrix_to_axis_angle(matrix: torch.Tensor, fast: bool = False) -> torch.Tensor:
    """Axis-angle vectors of rotation matrices, angle in [0, pi].

    Args:
        matrix: (..., 3, 3) rotation matrices (column-vector convention).
        fast: skip the quaternion and read angle and axis from the trace and skew part (the axis near
            pi from the symmetric part). Unlike PyTorch3D 0.7.9's `fast=True`, correct up to angle pi.
    Returns:
        (..., 3). At angle exactly pi, `a` and `-a` are the same rotation: either may be returned.
    """
    _check_last(matrix, "matrix", [3, 3], "(..., 3, 3)")
    if fast:
        return _matrix_to_axis_angle_direct(matrix)
    return quaternion_to_axis_angle(matrix_to_quaternion(matrix))


# --------------------------------------------------------------------------------------------- SO(3)
def so3_exp_map(log_rot: torch.Tensor, eps: float = 0.0001) -> torch.Tensor:
    """Exponential map so(3) -> SO(3): the rotation matrices of axis-angle vectors.

    As in PyTorch3D 0.7.9 this is `axis_angle_to_matrix` (quaternion route, stable at 0). `eps` is
    accepted for signature compatibility with PyTorch3D; it has no effect on that route.

    Args:
        log_rot: (N, 3) axis-angle vectors.
    Returns:
        (N, 3, 3)
    """
    _check_batch(log_rot, "log_rot", [3], "(N, 3)")
    return axis_angle_to_matrix(log_rot)


def so3_log_map(R: torch.Tensor, eps: float = 0.0001, cos_bound: float = 1e-4) -> torch.Tensor:
    """Logarithm map SO(3) -> so(3): axis-angle vectors of rotation matrices, angle in [0, pi].

    As in PyTorch3D 0.7.9 this is `matrix_to_axis_angle`; `eps` and `cos_bound` are accepted for
    signature compatibility and have no effect on that (stable) route.

    Args:
        R: (N, 3, 3) rotation matrices.
    Returns:
        (N, 3)
    """
    _check_batch(R, "R", [3, 3], "(N, 3, 3)")
    return matrix_to_axis_angle(R)


def _acos_linear_extrapolation(x: torch.Tensor, bound: float) -> torch.Tensor:
    """acos(x) on [-bound, bound], continued by its tangent line outside (finite gradient at |x| = 1)."""
    slope = 1.0 / math.sqrt(1.0 - bound * bound)
    above = math.acos(bound) - (x - bound) * slope  # tangent at +bound
    below = math.acos(-bound) - (x + bound) * slope  # tangent at -bound
    inside = torch.acos(x.clamp(-bound, bound))
    return torch.where(x > bound, above, torch.where(x < -bound, below, inside))


def so3_rotation_angle(
    R: torch.Tensor, eps: float = 1e-4, cos_angle: bool = False, cos_bound: float = 1e-4
) -> torch.Tensor:
    """Rotation angle of rotation matrices, from the trace.

    Args:
        R: (N, 3, 3) rotation matrices.
        eps: tolerance of the trace check: a trace outside [-1 - eps, 3 + eps] raises ValueError.
        cos_angle: return cos(angle) = (trace - 1) / 2 instead of the angle.
        cos_bound: acos is evaluated on [-1 + cos_bound, 1 - cos_bound] and extrapolated linearly outside,
            so the gradient stays finite at angles 0 and pi (PyTorch3D's `acos_linear_extrapolation`).
            As in PyTorch3D this biases angles within ~sqrt(2 cos_bound) of 0 or pi: with the default 1e-4,
            identical rotations give 0.0071 rad. 0 uses plain acos (exact, infinite gradient at 0 and pi).
    Returns:
        (N,) angles in radians (or their cosines).
    """
    _check_batch(R, "R", [3, 3], "(N, 3, 3)")
    trace = R[:, 0, 0] + R[:, 1, 1] + R[:, 2, 2]  # (N,)
    if bool(((trace < -1.0 - eps) | (trace > 3.0 + eps)).any()):
        raise ValueError("A matrix has trace outside valid range [-1-eps,3+eps].")
    phi_cos = (trace - 1.0) * 0.5
    if cos_angle:
        return phi_cos
    if cos_bound > 0:
        return _acos_linear_extrapolation(phi_cos, 1.0 - cos_bound)
    return torch.acos(phi_cos)


def so3_relative_angle(
    R1: torch.Tensor, R2: torch.Tensor, cos_angle: bool = False, cos_bound: float = 1e-4, eps: float = 1e-4
) -> torch.Tensor:
    """Angle of the relative rotation `R1 @ R2^T` between two batches of rotations.

    Args:
        R1, R2: (N, 3, 3) rotation matrices.
        cos_angle, cos_bound, eps: as in `so3_rotation_angle`.
    Returns:
        (N,) angles in radians (or their cosines).
    """
    _check_batch(R1, "R1", [3, 3], "(N, 3, 3)")
    _check_batch(R2, "R2", [3, 3], "(N, 3, 3)")
    if R1.shape[0] != R2.shape[0]:
        raise ValueError(f"Expected R1 and R2 to have the same N, got {_shape_str(R1)} and {_shape_str(R2)}")
    R12 = R1 @ R2.transpose(-1, -2)
    return so3_rotation_angle(R12, cos_angle=cos_angle, cos_bound=cos_bound, eps=eps)


# ------------------------------------------------------------------------------------------------ 6D
def rotation_6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """Continuous 6D representation -> rotation matrices, by Gram-Schmidt.

    Zhou et al., "On the Continuity of Rotation Representations in Neural Networks", CVPR 2019; as in
    PyTorch3D the **rows** of the result are b1, b2, b3.

    Args:
        d6: (..., 6), two 3-vectors a1 = d6[..., :3], a2 = d6[..., 3:].
    Returns:
        (..., 3, 3) with rows b1 = a1/|a1|, b2 = normalised a2 - (b1.a2) b1, b3 = b1 x b2.
    """
    _check_last(d6, "d6", [6], "(..., 6)")
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-2)


def matrix_to_rotation_6d(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrices -> 6D representation: the first two rows, concatenated, in a new tensor (as
    PyTorch3D, which clones: editing the result in place leaves `matrix` unchanged).

    Args:
        matrix: (..., 3, 3)
    Returns:
        (..., 6)
    """
    _check_last(matrix, "matrix", [3, 3], "(..., 3, 3)")
    # a new tensor, never a view of `matrix` (PyTorch3D transforms/rotation_conversions.py clones)
    return matrix[..., :2, :].clone().reshape(matrix.shape[:-2] + (6,))
