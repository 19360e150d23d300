"""Wavefront .obj reading and writing (geometry, texture coordinates and normals; materials are ignored).

Format: Wavefront Technologies "Object Files (.obj)" appendix B1 of the Advanced Visualizer manual
(https://paulbourke.net/dataformats/obj/): `v x y z [w]`, `vt u [v [w]]`, `vn x y z`, `f v/vt/vn ...` with
1-based indices, negative indices counting back from the last element defined so far, `#` comments and
`\\` line continuations. Polygons are split into a triangle fan (0, k, k+1).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor


class ObjExtras(NamedTuple):
    """verts_uvs (T, 2) | None; faces_uvs (F, 3) | None (-1 where a face corner has no vt);
    normals (N, 3) | None; faces_normals (F, 3) | None (-1 where a corner has no vn)."""

    verts_uvs: Tensor | None
    faces_uvs: Tensor | None
    normals: Tensor | None
    faces_normals: Tensor | None


class ObjMesh(NamedTuple):
    """verts (V, 3) float32, faces (F, 3) int64 (0-based), extras."""

    verts: Tensor
    faces: Tensor
    extras: ObjExtras


def _logical_lines(path: Path):
    """(line number of the first physical line, text) with comments stripped and continuations joined."""
    pending, start = "", 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.split("#", 1)[0].rstrip()
            if not pending:
                start = lineno
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            yield start, pending + line
            pending = ""
    if pending.strip():
        yield start, pending


def _floats(tokens: list[str], lo: int, hi: int, path: Path, lineno: int, what: str) -> list[float]:
    if not lo <= len(tokens) <= hi:
        raise ValueError(f"{path}:{lineno}: '{what}' needs {lo} to {hi} numbers, got {len(tokens)}")
    try:
        return [float(t) for t in tokens]
    except ValueError:
        raise ValueError(
            f"{path}:{lineno}: '{what}' has a value that is not a number: {' '.join(tokens)}"
        ) from None


def _index(token: str, count: int, path: Path, lineno: int, kind: str) -> int:
    """1-based or negative OBJ index -> 0-based, checked against the count defined so far."""
    try:
        i = int(token)
    except ValueError:
        raise ValueError(f"{path}:{lineno}: face {kind} index {token!r} is not an integer") from None
    j = i - 1 if i > 0 else count + i
    if i == 0 or not 0 <= j < count:
        raise ValueError(f"{path}:{lineno}: face {kind} index {i} out of range ({count} defined so far)")
    return j


def load_obj(path: str | os.PathLike) -> ObjMesh:
    """Read an .obj file: verts (V, 3) float32, faces (F, 3) int64 0-based, ObjExtras.

    Handles `v`, `vt`, `vn`, `f` with `v`, `v/vt`, `v//vn`, `v/vt/vn` corners and negative indices; other
    statements (o, g, s, usemtl, mtllib, l, p, ...) are skipped. A malformed v/vt/vn/f line raises ValueError
    naming the file and line number.
    """
    path = Path(path)
    verts: list[list[float]] = []
    uvs: list[list[float]] = []
    normals: list[list[float]] = []
    faces: list[tuple[int, int, int]] = []
    fuv: list[tuple[int, int, int]] = []
    fnrm: list[tuple[int, int, int]] = []
    for lineno, line in _logical_lines(path):
        tokens = line.split()
        if not tokens:
            continue
        key, args = tokens[0], tokens[1:]
        if key == "v":
            # 3 coordinates, optionally w, or the common "x y z r g b" vertex-colour extension.
            verts.append(_floats(args, 3, 7, path, lineno, "v")[:3])
        elif key == "vt":
            uv = _floats(args, 1, 3, path, lineno, "vt")
            uvs.append((uv + [0.0])[:2])
        elif key == "vn":
            normals.append(_floats(args, 3, 3, path, lineno, "vn"))
        elif key == "f":
            if len(args) < 3:
                raise ValueError(f"{path}:{lineno}: face needs at least 3 corners, got {len(args)}")
            corners = []
            for tok in args:
                parts = tok.split("/")
                if len(parts) > 3 or parts[0] == "":
                    raise ValueError(f"{path}:{lineno}: malformed face corner {tok!r}")
                vi = _index(parts[0], len(verts), path, lineno, "vertex")
                ti = (
                    _index(parts[1], len(uvs), path, lineno, "texture") if len(parts) > 1 and parts[1] else -1
                )
                ni = (
                    _index(parts[2], len(normals), path, lineno, "normal")
                    if len(parts) > 2 and parts[2]
                    else -1
                )
                corners.append((vi, ti, ni))
            for k in range(1, len(corners) - 1):  # triangle fan
                tri = (corners[0], corners[k], corners[k + 1])
                faces.append(tuple(c[0] for c in tri))
                fuv.append(tuple(c[1] for c in tri))
                fnrm.append(tuple(c[2] for c in tri))
    v = torch.from_numpy(np.asarray(verts, dtype=np.float32).reshape(-1, 3))
    f = torch.from_numpy(np.asarray(faces, dtype=np.int64).reshape(-1, 3))
    fuv_t = torch.from_numpy(np.asarray(fuv, dtype=np.int64).reshape(-1, 3))
    fn_t = torch.from_numpy(np.asarray(fnrm, dtype=np.int64).reshape(-1, 3))
    extras = ObjExtras(
        verts_uvs=torch.from_numpy(np.asarray(uvs, dtype=np.float32).reshape(-1, 2)) if uvs else None,
        faces_uvs=fuv_t if bool((fuv_t >= 0).any()) else None,
        normals=torch.from_numpy(np.asarray(normals, dtype=np.float32).reshape(-1, 3)) if normals else None,
        faces_normals=fn_t if bool((fn_t >= 0).any()) else None,
    )
    return ObjMesh(v, f, extras)


def save_obj(
    path: str | os.PathLike,
    verts: Tensor,
    faces: Tensor,
    verts_uvs: Tensor | None = None,
    faces_uvs: Tensor | None = None,
    overwrite: bool = False,
    decimal_places: int | None = None,
) -> None:
    """Write verts (V, 3) and faces (F, 3) (0-based) to an .obj, optionally with verts_uvs (T, 2) and
    faces_uvs (F, 3) (-1 = corner without texture coordinate, as `load_obj` returns; written as `v` instead
    of `v/vt`, so load -> save -> load is exact). Refuses to replace an existing file unless overwrite=True (FileExistsError).
    Values are written with full float32 precision (repr) unless decimal_places is given."""
    path = Path(path)
    if verts.dim() != 2 or verts.shape[1] != 3:
        raise ValueError(f"verts must have shape (V, 3), got {tuple(verts.shape)}")
    if faces.dim() != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {tuple(faces.shape)}")
    if (verts_uvs is None) != (faces_uvs is None):
        raise ValueError("verts_uvs and faces_uvs must be given together")
    if verts_uvs is not None and (verts_uvs.dim() != 2 or verts_uvs.shape[1] != 2):
        raise ValueError(f"verts_uvs must have shape (T, 2), got {tuple(verts_uvs.shape)}")
    if faces_uvs is not None and faces_uvs.shape != faces.shape:
        raise ValueError(
            f"faces_uvs must have shape {tuple(faces.shape)} like faces, got {tuple(faces_uvs.shape)}"
        )
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= verts.shape[0]):
        raise ValueError(f"faces index out of range for {verts.shape[0]} verts")
    if faces_uvs is not None and faces_uvs.numel():
        lo, hi = int(faces_uvs.min()), int(faces_uvs.max())
        if lo < -1 or hi >= verts_uvs.shape[0]:
            raise ValueError(
                f"faces_uvs values must be in [-1, {verts_uvs.shape[0]}) for {verts_uvs.shape[0]} verts_uvs "
                f"(-1 = no texture coordinate), got [{lo}, {hi}]"
            )
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")

    fmt = (lambda x: f"{x:.{decimal_places}f}") if decimal_places is not None else repr
    v = verts.detach().cpu().to(torch.float64).numpy()
    lines = [f"v {fmt(float(a))} {fmt(float(b))} {fmt(float(c))}" for a, b, c in v.tolist()]
    f1 = (faces.detach().cpu().long() + 1).tolist()
    if verts_uvs is not None:
        lines += [
            f"vt {fmt(float(a))} {fmt(float(b))}" for a, b in verts_uvs.detach().cpu().double().tolist()
        ]
        t1 = (faces_uvs.detach().cpu().long() + 1).tolist()  # 0 = no texture coordinate

        def corner(v: int, t: int) -> str:
            return f"{v}/{t}" if t > 0 else f"{v}"

        lines += [
            f"f {corner(a, ta)} {corner(b, tb)} {corner(c, tc)}" for (a, b, c), (ta, tb, tc) in zip(f1, t1)
        ]
    else:
        lines += [f"f {a} {b} {c}" for a, b, c in f1]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
