"""Shared test helpers: the PyTorch3D reference files (tests/data/pytorch3d), dtype tolerances, assert_close.

Imported as `from helpers import ...`: tests/ has no __init__.py, so pytest (rootdir conftest, default
"prepend" import mode) puts tests/ on sys.path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

# .npz outputs written by PyTorch3D itself, kept in the repository; README.md there has conventions and keys.
REFERENCE_DIR = Path(__file__).resolve().parent / "data" / "pytorch3d"

# Tolerances come from the dtype (kornia's `_DTYPE_PRECISIONS` in kornia/testing), here for values of O(1);
# a test that needs another bound passes atol/rtol explicitly and says why. Other float dtypes: pass both.
TOL: dict[torch.dtype, dict[str, float]] = {
    torch.float64: dict(atol=1e-12, rtol=1e-10),
    torch.float32: dict(atol=1e-6, rtol=1e-5),
}


def load_reference(name: str) -> dict[str, np.ndarray]:
    """Every array of REFERENCE_DIR/<name>.npz, loaded eagerly (`name` with or without ".npz")."""
    path = REFERENCE_DIR / (name if name.endswith(".npz") else f"{name}.npz")
    if not path.exists():
        raise FileNotFoundError(f"PyTorch3D reference file {path} not found (REFERENCE_DIR={REFERENCE_DIR})")
    with np.load(path) as d:
        return {k: d[k] for k in d.files}


def load_reference_tensors(name: str) -> dict:
    """`load_reference(name)` with every array as a tensor, and its "meta_json" parsed into "meta"."""
    arrays = load_reference(name)
    out: dict = {k: torch.from_numpy(v) for k, v in arrays.items() if k != "meta_json"}
    if "meta_json" in arrays:
        out["meta"] = json.loads(str(arrays["meta_json"]))
    return out


def _as_tensor(x, like: torch.Tensor | None = None) -> torch.Tensor:
    """Tensors pass through; Python and NumPy numbers keep their precision (a Python float is float64)."""
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.array(x))
    return t if like is None else t.to(like.device)


def assert_close(
    actual,
    expected,
    what: str = "",
    *,
    atol: float | None = None,
    rtol: float | None = None,
) -> None:
    """Assert |actual - expected| <= atol + rtol * |expected| elementwise, with the same shape.

    atol / rtol default to TOL[actual.dtype]; non-float dtypes must be exactly equal. NaN is never close;
    equal infinities are. The difference is taken in the promoted dtype of the two inputs. On failure the
    message gives the max |diff| and where, the allowed tolerance, the number of bad elements, and the first
    bad index with both values there.
    """
    __tracebackhide__ = True  # pytest reports the failing line of the test, not this helper's
    a = _as_tensor(actual).detach()
    e = _as_tensor(expected, like=a).detach()
    label = what or "assert_close"
    dtype = a.dtype
    if a.shape != e.shape:
        raise AssertionError(f"{label}: shape {tuple(a.shape)} != expected {tuple(e.shape)}")
    if dtype.is_floating_point:
        if dtype not in TOL and (atol is None or rtol is None):
            raise ValueError(f"{label}: no default tolerance for dtype {dtype}; pass atol and rtol")
        default = TOL.get(dtype, {})
        atol = default["atol"] if atol is None else atol
        rtol = default["rtol"] if rtol is None else rtol
    else:
        atol = 0.0 if atol is None else atol
        rtol = 0.0 if rtol is None else rtol
    common = torch.promote_types(a.dtype, e.dtype)
    if not common.is_floating_point and not (atol or rtol):
        ok = a == e  # integers and bools: exact, in their own dtype
        diff = (a.to(torch.float64) - e.to(torch.float64)).abs()  # for the report only
    else:
        common = common if common.is_floating_point else torch.float64
        a, e = a.to(common), e.to(common)
        diff = (a - e).abs()
        ok = (diff <= atol + rtol * e.abs()) | (a == e)  # a == e: equal infinities; NaN fails both
    if bool(ok.all()):
        return
    bad = ~ok
    first = tuple(int(i) for i in bad.nonzero()[0])
    finite = diff.nan_to_num(nan=float("inf"))
    worst = (
        tuple(int(i) for i in np.unravel_index(int(finite.argmax()), tuple(diff.shape))) if diff.ndim else ()
    )
    raise AssertionError(
        f"{label}: max |diff| {diff.max().item():.3e} at {worst} "
        f"(allowed {atol:.1e} + {rtol:.1e} * |expected|, dtype {dtype}), "
        f"{int(bad.sum())} bad of {bad.numel()} (shape {tuple(a.shape)}), "
        f"first at {first}: actual {a[first].item()!r} vs expected {e[first].item()!r}"
    )


def modules_loaded_by(package: str, forbidden: tuple[str, ...]) -> list[str]:
    """The modules of the `forbidden` top-level packages that `import package` loads, in a fresh
    interpreter (so that what this test process already imported does not count)."""
    code = (
        f"import sys, {package}\n"
        f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r})))"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]
