"""geometry.rotations against PyTorch3D's outputs (rotations.npz), SciPy, analytic values and gradcheck."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

import geometry.rotations as rotations_module
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
    standardize_quaternion,
)
from helpers import TOL, assert_close, load_reference

DTYPES = {"f64": torch.float64, "f32": torch.float32}
# rotation entries are O(1): a float32 rtol tighter than TOL[torch.float32]; float64 as in TOL
ROT_TOL = {torch.float64: TOL[torch.float64], torch.float32: dict(atol=TOL[torch.float32]["atol"], rtol=2e-6)}


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    return load_reference("rotations")


def _t(ref: dict, key: str, suf: str) -> torch.Tensor:
    return torch.from_numpy(ref[f"{key}_{suf}"])


def _angles(aa: torch.Tensor) -> torch.Tensor:
    return aa.norm(dim=-1)


# -------------------------------------------------------------------------------------- reference file
@pytest.mark.parametrize("suf", ["f64", "f32"])
def test_axis_angle_to_matrix_reference(ref, suf):
    dtype = DTYPES[suf]
    aa = _t(ref, "axis_angle_in", suf)
    assert aa.dtype == dtype
    assert_close(
        axis_angle_to_matrix(aa), _t(ref, "axis_angle_to_matrix", suf), **ROT_TOL[dtype], what="default"
    )
    assert_close(
        axis_angle_to_matrix(aa, fast=True),
        _t(ref, "axis_angle_to_matrix_fast", suf),
        **ROT_TOL[dtype],
        what="fast",
    )
    assert_close(so3_exp_map(aa), _t(ref, "so3_exp_map", suf), **ROT_TOL[dtype], what="so3_exp_map")


@pytest.mark.parametrize("suf", ["f64", "f32"])
def test_so3_exp_map_gradient_reference(ref, suf):
    dtype = DTYPES[suf]
    aa = _t(ref, "axis_angle_in", suf).clone().requires_grad_(True)
    W = _t(ref, "grad_so3_exp_map_W", suf)
    (so3_exp_map(aa) * W).sum().backward()
    assert torch.isfinite(aa.grad).all(), "non-finite gradient (rows include angles 0 and pi)"
    # gradients are O(1)-O(10): scale the tolerance
    tol = {k: 10 * v for k, v in ROT_TOL[dtype].items()}
    assert_close(aa.grad, _t(ref, "grad_so3_exp_map", suf), **tol, what="d sum(exp(aa) W) / d aa")


@pytest.mark.parametrize("suf", ["f64", "f32"])
def test_matrix_to_axis_angle_reference(ref, suf):
    dtype = DTYPES[suf]
    M = _t(ref, "matrix_in", suf)
    expected = _t(ref, "matrix_to_axis_angle", suf)
    # away from pi, element by element; at pi, a and -a are the same rotation (README section 5)
    away = (math.pi - _angles(expected)) > 1e-5
    assert int((~away).sum()) >= 5, "reference has rotations by (nearly) pi"
    out = matrix_to_axis_angle(M)
    assert_close(out[away], expected[away], **ROT_TOL[dtype], what="matrix_to_axis_angle (not near pi)")
    assert_close(
        so3_log_map(M)[away], _t(ref, "so3_log_map", suf)[away], **ROT_TOL[dtype], what="so3_log_map"
    )
    # everywhere (near pi too): the round trip reproduces the input rotation; angle in [0, pi]
    tol = {k: 5 * v for k, v in ROT_TOL[dtype].items()}
    assert_close(axis_angle_to_matrix(out), M, **tol, what="round trip R -> aa -> R")
    assert bool((_angles(out) <= math.pi + 10 * torch.finfo(dtype).eps).all()), "angle above pi"


@pytest.mark.parametrize("suf", ["f64", "f32"])
def test_matrix_to_axis_angle_fast_reference(ref, suf):
    dtype = DTYPES[suf]
    M = _t(ref, "matrix_in", suf)
    expected = _t(ref, "matrix_to_axis_angle_fast", suf)
    out = matrix_to_axis_angle(M, fast=True)
    # PyTorch3D's fast path is wrong within ~1e-5 pi of pi (rows 138-142, README section 5) and, in float32,
    # loses precision as sin(angle) -> 0 (row 137, angle pi - 1e-4): compare where sin(angle) > 1e-3
    ok = torch.sin(_angles(_t(ref, "matrix_to_axis_angle", "f64"))) > 1e-3
    ok |= _angles(_t(ref, "matrix_to_axis_angle", "f64")) < 1.0
    assert int(ok.sum()) >= 135
    tol = {k: 10 * v for k, v in ROT_TOL[dtype].items()}
    assert_close(out[ok], expected[ok], **tol, what="matrix_to_axis_angle(fast=True)")
    # ours is right everywhere, including at pi
    assert_close(axis_angle_to_matrix(out), M, **tol, what="fast round trip R -> aa -> R")


@pytest.mark.parametrize("suf", ["f64", "f32"])
def test_rotation_6d_reference(ref, suf):
    dtype = DTYPES[suf]
    d6 = _t(ref, "d6_in", suf)
    R = rotation_6d_to_matrix(d6)
    assert_close(R, _t(ref, "rotation_6d_to_matrix", suf), **ROT_TOL[dtype], what="rotation_6d_to_matrix")
    # 6D of a rotation is its first two rows (exact: a copy, no arithmetic), and maps back to the rotation
    assert torch.equal(matrix_to_rotation_6d(R), R[:, :2, :].reshape(-1, 6)), "matrix_to_rotation_6d"
    assert_close(rotation_6d_to_matrix(matrix_to_rotation_6d(R)), R, **ROT_TOL[dtype], what="6d round trip")


# ----------------------------------------------------------------------------- independent references
def _random_axis_angle(n: int, dtype=torch.float64, max_angle: float = math.pi) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    axis = torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=dtype), dim=-1)
    return axis * torch.rand(n, 1, generator=g, dtype=dtype) * max_angle


def test_against_scipy():
    aa = _random_axis_angle(50)
    R_sp = torch.from_numpy(Rotation.from_rotvec(aa.numpy()).as_matrix())
    assert_close(axis_angle_to_matrix(aa), R_sp, what="vs scipy from_rotvec")
    q_sp = torch.from_numpy(Rotation.from_rotvec(aa.numpy()).as_quat())[
        :, [3, 0, 1, 2]
    ]  # scalar last -> first
    assert_close(axis_angle_to_quaternion(aa), standardize_quaternion(q_sp), what="quat")
    assert_close(matrix_to_quaternion(R_sp), standardize_quaternion(q_sp), what="m2q")
    assert_close(quaternion_to_matrix(q_sp), R_sp, what="q2m")
    assert_close(matrix_to_axis_angle(R_sp), aa, what="m2aa")


def test_analytic_rotation_direction():
    # column-vector convention: +90 deg about z maps x to y
    R = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, math.pi / 2]], dtype=torch.float64))[0]
    assert_close(
        R @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
        torch.tensor([0.0, 1, 0], dtype=torch.float64),
        atol=1e-15,
        rtol=0,
        what="Rz(90) e_x",
    )
    q = axis_angle_to_quaternion(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))
    s = math.sqrt(0.5)
    assert_close(
        q, torch.tensor([s, 0, 0, s], dtype=torch.float64), atol=1e-15, rtol=0, what="quaternion w first"
    )


def test_round_trips_and_quaternion_conventions():
    aa = _random_axis_angle(64, max_angle=math.pi - 1e-3)
    assert_close(quaternion_to_axis_angle(axis_angle_to_quaternion(aa)), aa, what="aa->q->aa")
    R = axis_angle_to_matrix(aa)
    assert_close(quaternion_to_matrix(matrix_to_quaternion(R)), R, what="R->q->R")
    q = matrix_to_quaternion(R)
    assert bool((q[:, 0] >= 0).all()), "matrix_to_quaternion must return w >= 0"
    assert_close(q.norm(dim=-1), torch.ones(64, dtype=torch.float64), what="unit quaternion")
    # quaternion_to_matrix normalises: scaled and negated quaternions give the same rotation
    assert_close(quaternion_to_matrix(-3.0 * q), R, what="scale/sign invariance")
    # angles above pi: quaternion_to_axis_angle returns angle in (pi, 2 pi] for w < 0 (PyTorch3D)
    assert_close(quaternion_to_axis_angle(-q).norm(dim=-1), 2 * math.pi - aa.norm(dim=-1), what="w<0")
    # arbitrary leading dims
    assert axis_angle_to_matrix(aa.reshape(4, 16, 3)).shape == (4, 16, 3, 3)
    assert matrix_to_axis_angle(R.reshape(2, 32, 3, 3)).shape == (2, 32, 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_near_zero_and_pi_round_trip(dtype):
    axis = torch.nn.functional.normalize(torch.tensor([[0.3, -0.5, 0.8]], dtype=torch.float64), dim=-1)
    angles = torch.tensor(
        [0.0, 1e-12, 1e-7, 1e-4, math.pi - 1e-4, math.pi - 1e-7, math.pi], dtype=torch.float64
    )
    aa = (axis * angles[:, None]).to(dtype)
    R = axis_angle_to_matrix(aa)
    for fast in (False, True):
        out = matrix_to_axis_angle(R, fast=fast)
        tol = {k: 10 * v for k, v in ROT_TOL[dtype].items()}
        assert_close(axis_angle_to_matrix(out), R, **tol, what=f"round trip fast={fast}")
        # below pi the axis-angle is unique
        assert_close(out[:5], aa[:5], **tol, what=f"aa near 0 / pi fast={fast}")


# ------------------------------------------------------------------------------------------ gradients
def _gradcheck(fn, *inputs):
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5), fn


def test_gradcheck_axis_angle_to_matrix():
    aa = torch.cat(
        [
            _random_axis_angle(3),
            torch.zeros(1, 3, dtype=torch.float64),
            torch.tensor([[1e-8, 0, 0], [0, 0, math.pi - 1e-3]], dtype=torch.float64),
        ]
    )
    aa.requires_grad_(True)
    _gradcheck(axis_angle_to_matrix, aa)
    _gradcheck(lambda a: axis_angle_to_matrix(a, fast=True), aa)
    _gradcheck(axis_angle_to_quaternion, aa)


@pytest.mark.parametrize("angle", [0.0, 1e-6, 0.7, 2.5, math.pi - 1e-3])
@pytest.mark.parametrize("fast", [False, True])
def test_gradcheck_matrix_to_axis_angle(angle, fast):
    axis = torch.nn.functional.normalize(
        torch.tensor([[0.3, -0.5, 0.8], [-0.9, 0.1, 0.2]], dtype=torch.float64)
    )
    R = axis_angle_to_matrix(axis * angle).requires_grad_(True)
    _gradcheck(lambda m: matrix_to_axis_angle(m, fast=fast), R)


@pytest.mark.parametrize("fast", [False, True])
def test_matrix_to_axis_angle_finite_gradient_at_0_and_pi(fast):
    aa = torch.tensor([[0.0, 0, 0], [math.pi, 0, 0], [0, 0, math.pi], [1e-9, 0, 0]], dtype=torch.float64)
    for dtype in (torch.float32, torch.float64):
        R = axis_angle_to_matrix(aa).to(dtype).requires_grad_(True)
        out = matrix_to_axis_angle(R, fast=fast)
        out.pow(2).sum().backward()  # d|a|^2 is well defined at pi even though a's sign is not
        assert torch.isfinite(R.grad).all(), f"non-finite gradient ({dtype}, fast={fast}): {R.grad}"


def test_gradcheck_quaternion_and_6d():
    g = torch.Generator().manual_seed(2)
    q = torch.randn(4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    _gradcheck(quaternion_to_matrix, q)
    _gradcheck(quaternion_to_axis_angle, q)
    R = axis_angle_to_matrix(_random_axis_angle(4)).requires_grad_(True)
    _gradcheck(matrix_to_quaternion, R)
    d6 = torch.randn(4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    _gradcheck(rotation_6d_to_matrix, d6)


# ------------------------------------------------------------------------------------- relative angle
def test_so3_relative_angle_analytic():
    axis = torch.nn.functional.normalize(torch.tensor([[1.0, 2.0, -0.5]], dtype=torch.float64))
    a = torch.tensor([0.3, 1.0, 2.0, 0.1], dtype=torch.float64)[:, None]
    b = torch.tensor([1.2, -0.5, 0.4, 2.9], dtype=torch.float64)[:, None]
    R1, R2 = axis_angle_to_matrix(axis * a), axis_angle_to_matrix(axis * b)
    expected = (a - b).abs()[:, 0]
    expected = torch.where(expected > math.pi, 2 * math.pi - expected, expected)
    assert_close(so3_relative_angle(R1, R2), expected, atol=1e-8, rtol=1e-8, what="relative angle")
    assert_close(so3_relative_angle(R1, R2, cos_angle=True), torch.cos(expected), what="cos_angle")
    assert_close(so3_relative_angle(R2, R1), expected, atol=1e-8, rtol=1e-8, what="symmetry")


def test_so3_relative_angle_bounds_and_gradient():
    R = axis_angle_to_matrix(_random_axis_angle(3))
    # at angle 0, acos is replaced by its tangent at 1 - cos_bound (PyTorch3D's acos_linear_extrapolation)
    b = 1.0 - 1e-4
    expected = math.acos(b) - (1.0 - b) / math.sqrt(1.0 - b * b)
    assert_close(
        so3_relative_angle(R, R),
        torch.full((3,), expected, dtype=torch.float64),
        atol=1e-9,
        rtol=0,
        what="extrapolated angle at 0",
    )
    assert_close(
        so3_relative_angle(R, R, cos_bound=0.0),
        torch.zeros(3, dtype=torch.float64),
        atol=2e-7,
        rtol=0,
        what="plain acos at 0",
    )
    Rg = R.clone().requires_grad_(True)
    so3_relative_angle(Rg, R).sum().backward()
    assert torch.isfinite(Rg.grad).all(), "gradient at angle 0 must be finite with cos_bound > 0"
    R1 = axis_angle_to_matrix(_random_axis_angle(3)).requires_grad_(True)
    R2 = axis_angle_to_matrix(_random_axis_angle(3) * 0.3).requires_grad_(True)
    _gradcheck(so3_relative_angle, R1, R2)
    with pytest.raises(ValueError, match="trace"):
        so3_rotation_angle(3.0 * R)


# ------------------------------------------------------------------------------------------ shapes
def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="axis_angle"):
        axis_angle_to_matrix(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="matrix"):
        matrix_to_axis_angle(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="quaternions"):
        quaternion_to_matrix(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="d6"):
        rotation_6d_to_matrix(torch.zeros(4, 5))
    with pytest.raises(ValueError, match="log_rot"):
        so3_exp_map(torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match="R2"):
        so3_relative_angle(torch.eye(3)[None], torch.eye(3))
    with pytest.raises(ValueError, match="R"):
        so3_log_map(torch.eye(3))


def test_matrix_to_rotation_6d_returns_a_new_tensor():
    # PyTorch3D transforms/rotation_conversions.py returns `matrix[..., :2, :].clone().reshape(...)`, and its
    # tests/test_rotation_conversions.py::test_6d edits the 6D result in place (`r6d[:, 3:] += ...`).
    g = torch.Generator().manual_seed(5)
    R = so3_exp_map(torch.randn(7, 3, generator=g, dtype=torch.float64))
    before = R.clone()
    r6d = matrix_to_rotation_6d(R)
    assert_close(r6d, R[:, :2, :].reshape(-1, 6), "6D = the first two rows")
    r6d[:, 3:] += 2 * r6d[:, :3]
    r6d[:, :3] *= 3.0
    assert torch.equal(R, before), "editing the 6D result in place changed the matrix"  # exact: untouched
    assert_close(rotation_6d_to_matrix(r6d), R, "Gram-Schmidt undoes the edit (test_6d)")
    assert r6d.data_ptr() != R.data_ptr()
    r6d_grad = matrix_to_rotation_6d(before.clone().requires_grad_())
    r6d_grad.sum().backward()  # still differentiable through the copy


def _script_inputs(name: str, dtype: torch.dtype) -> tuple:
    g = torch.Generator().manual_seed(11)
    aa = torch.randn(16, 3, generator=g, dtype=dtype)
    R = axis_angle_to_matrix(aa)
    return {
        "axis_angle_to_matrix": (aa,),
        "axis_angle_to_quaternion": (aa,),
        "matrix_to_axis_angle": (R,),
        "matrix_to_quaternion": (R,),
        "matrix_to_rotation_6d": (R,),
        "quaternion_to_axis_angle": (torch.randn(16, 4, generator=g, dtype=dtype),),
        "quaternion_to_matrix": (torch.randn(16, 4, generator=g, dtype=dtype),),
        "standardize_quaternion": (torch.randn(16, 4, generator=g, dtype=dtype),),
        "rotation_6d_to_matrix": (torch.randn(16, 6, generator=g, dtype=dtype),),
        "so3_exp_map": (aa,),
        "so3_log_map": (R,),
        "so3_rotation_angle": (R,),
        "so3_relative_angle": (R, axis_angle_to_matrix(torch.randn(16, 3, generator=g, dtype=dtype))),
    }[name]


# every public rotation function scripts, as PyTorch3D's do (a new public function is covered automatically)
SCRIPTABLE = sorted(rotations_module.__all__)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", SCRIPTABLE)
def test_scriptable(name, dtype):
    # PyTorch3D tests/test_rotation_conversions.py and tests/test_so3.py `test_scriptable` call
    # torch.jit.script on each conversion and on so3_exp_map / so3_log_map.
    fn = getattr(rotations_module, name)
    scripted = torch.jit.script(fn)
    args = _script_inputs(name, dtype)
    assert_close(scripted(*args), fn(*args), f"scripted {name}", **TOL[dtype])
    if name in ("axis_angle_to_matrix", "matrix_to_axis_angle"):
        assert_close(scripted(args[0], True), fn(args[0], fast=True), f"scripted {name} fast", **TOL[dtype])
    with pytest.raises((ValueError, torch.jit.Error), match="shape"):
        scripted(*(a[..., :2] for a in args))  # the shape check survives scripting
