"""Backend switch: the rasterizers and knn run in pure PyTorch ("torch") or through PyTorch3D ("pytorch3d").

PyTorch3D is optional (no wheel for every Python). `set_backend("pytorch3d")` or a per-call
`backend="pytorch3d"` routes `rasterize_meshes`, `rasterize_points` and `knn_points` through it when it is
importable; asking for it when it is not raises ImportError with what to install.
"""

from __future__ import annotations

import importlib.util

BACKENDS = ("torch", "pytorch3d")
_backend = "torch"


def pytorch3d_available() -> bool:
    """True when `import pytorch3d` would succeed."""
    return importlib.util.find_spec("pytorch3d") is not None


def set_backend(name: str) -> None:
    """Choose the default backend for the rasterizers and knn: "torch" or "pytorch3d"."""
    global _backend
    _backend = resolve_backend(name)


def get_backend() -> str:
    return _backend


def resolve_backend(name: str | None) -> str:
    """`name` or, when None, the default; checks that it is known and importable."""
    name = _backend if name is None else name
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "pytorch3d" and not pytorch3d_available():
        raise ImportError(
            "backend='pytorch3d' needs PyTorch3D, which is not importable here; install it "
            "(conda or a source build, see https://github.com/facebookresearch/pytorch3d/blob/main/INSTALL.md) "
            "or use backend='torch'"
        )
    return name
