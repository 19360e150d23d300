"""Wavefront .obj reading and writing (geometry, texture coordinates and normals; materials are ignored).

Format: Wavefront Technologies "Object Files (.obj)" appendix B1 of the Advanced Visualizer manual
(https://paulbourke.net/dataformats/obj/): `v x y z [w]`, `vt u [v [w]]`, `vn x y z`, `f v/vt/vn ...` with
1-based indices, negative indices counting back from the last element defined so far, `#` comments and
`\\` line continuations. Polygons are split into a triangle fan (0, k, k+1).

Policies follow PyTorch3D `io/obj_io.py` (v0.7.9) and its `tests/test_io_obj.py`:
* a face index out of range (or 0) does not stop the load: a UserWarning "Faces have invalid indices" is
  issued (here naming file:line of the first bad faces) and the face is kept with the index PyTorch3D
  returns (i - 1 for i > 0; 0 for 0; negative indices counted back), as `_format_faces_indices` does;
* faces without texture coordinates / normals get -1 rows in faces_uvs / faces_normals (PyTorch3D's
  `textures_idx` / `normals_idx` padding); `vt` lines that no face uses still come back as verts_uvs;
* an empty file (or one without faces) loads as verts (V, 3) and faces (0, 3);
* `save_obj` writes PyTorch3D `_save`'s exact text (see its docstring), warns "Faces have invalid indices"
  for out-of-range faces instead of refusing, and for empty verts and faces warns "Empty 'verts' and
  'faces' arguments provided" and writes an empty file.
Deliberate differences: `load_obj` returns `ObjMesh(verts, faces, extras)` (a faces tensor, not PyTorch3D's
`Faces`/`Properties` tuples, no materials); negative indices count from the element defined so far (the
format's rule; PyTorch3D counts from the end of the file, the same when faces follow their vertices);
corners of one face may mix `v` and `v/vt` (PyTorch3D raises); malformed lines (a `v` with two numbers, a
face with two corners, a non-integer index) raise ValueError naming file:line; `save_obj` refuses to
replace an existing file unless `overwrite=True` (PyTorch3D overwrites), writes `vt` and `f v/vt` whenever
verts_uvs and faces_uvs are given (PyTorch3D only with a texture_map, which is not supported here), and
writes a corner whose faces_uvs / faces_normals_idx is -1 without that index (`v`, `v//vn`, `v/vt`), where
PyTorch3D writes `/0`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor


class ObjExtras(NamedTuple):
    """verts_uvs (T, 2) | None (None without vt lines); faces_uvs (F, 3) int64, -1 where a face corner has no
    vt; normals (N, 3) | None (None without vn lines); faces_normals (F, 3) int64, -1 where a corner has no vn.
    (PyTorch3D's aux.verts_uvs / faces.textures_idx, aux.normals / faces.normals_idx.)"""

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
    """1-based or negative OBJ index -> 0-based as PyTorch3D `_format_faces_indices` (i - 1 for i > 0, 0 for
    0), negative ones counted back from the `count` elements defined so far. Range checks come later."""
    try:
        i = int(token)
    except ValueError:
        raise ValueError(f"{path}:{lineno}: face {kind} index {token!r} is not an integer") from None
    return i - 1 if i > 0 else (count + i if i < 0 else 0)


def load_obj(path: str | os.PathLike) -> ObjMesh:
    """Read an .obj file: verts (V, 3) float32, faces (F, 3) int64 0-based, ObjExtras.

    Handles `v`, `vt`, `vn`, `f` with `v`, `v/vt`, `v//vn`, `v/vt/vn` corners and negative indices; other
    statements (o, g, s, usemtl, mtllib, l, p, ...) are skipped. A malformed v/vt/vn/f line raises ValueError
    naming the file and line number; an out-of-range face index warns (module docstring: PyTorch3D's policy).
    extras.faces_uvs and extras.faces_normals are always (F, 3) int64, -1 where a corner has no vt / vn;
    extras.verts_uvs and extras.normals are None when the file has no vt / vn line.
    """
    path = Path(path)
    verts: list[list[float]] = []
    uvs: list[list[float]] = []
    normals: list[list[float]] = []
    # per triangle corner: (vertex, texture, normal) 0-based index, the same as written, and the line
    tris: list[tuple[tuple[int, int, int], ...]] = []
    raws: list[tuple[tuple[int, int, int], ...]] = []
    tri_lines: list[int] = []
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
            corners, raw = [], []
            for tok in args:
                parts = tok.split("/")
                if len(parts) > 3 or parts[0] == "":
                    raise ValueError(f"{path}:{lineno}: malformed face corner {tok!r}")
                ijk, r = [], []
                for slot, (kind, count) in enumerate(
                    (("vertex", len(verts)), ("texture", len(uvs)), ("normal", len(normals)))
                ):
                    if len(parts) > slot and parts[slot]:
                        ijk.append(_index(parts[slot], count, path, lineno, kind))
                        r.append(int(parts[slot]))
                    else:
                        ijk.append(-1)  # absent: PyTorch3D's pad value
                        r.append(None)
                corners.append(tuple(ijk))
                raw.append(tuple(r))
            for k in range(1, len(corners) - 1):  # triangle fan
                tris.append((corners[0], corners[k], corners[k + 1]))
                raws.append((raw[0], raw[k], raw[k + 1]))
                tri_lines.append(lineno)
    idx = np.asarray(tris, dtype=np.int64).reshape(-1, 3, 3)  # (F, corner, slot)
    present = np.asarray([[[x is not None for x in c] for c in t] for t in raws], dtype=bool).reshape(
        -1, 3, 3
    )
    raw = np.asarray([[[1 if x is None else x for x in c] for c in t] for t in raws], dtype=np.int64)
    raw = raw.reshape(-1, 3, 3)
    lines = np.asarray(tri_lines, dtype=np.int64)
    for slot, (kind, count) in enumerate(
        (("vertex", len(verts)), ("texture", len(uvs)), ("normal", len(normals)))
    ):
        i, p_, r = idx[:, :, slot], present[:, :, slot], raw[:, :, slot]
        bad = (((i < 0) | (i >= count)) | (r == 0)) & p_
        rows = np.nonzero(bad.any(1))[0]
        if rows.size:
            where = "; ".join(
                f"{path}:{int(lines[j])}: {kind} index {int(r[j][bad[j]][0])}" for j in rows[:3]
            )
            more = f"; and {rows.size - 3} more faces" if rows.size > 3 else ""
            warnings.warn(
                f"Faces have invalid indices: {where}{more} ({count} {kind} entries; faces kept, as PyTorch3D)",
                UserWarning,
                stacklevel=2,
            )
    v = torch.from_numpy(np.asarray(verts, dtype=np.float32).reshape(-1, 3))
    extras = ObjExtras(
        verts_uvs=torch.from_numpy(np.asarray(uvs, dtype=np.float32).reshape(-1, 2)) if uvs else None,
        faces_uvs=torch.from_numpy(np.ascontiguousarray(idx[:, :, 1])),
        normals=torch.from_numpy(np.asarray(normals, dtype=np.float32).reshape(-1, 3)) if normals else None,
        faces_normals=torch.from_numpy(np.ascontiguousarray(idx[:, :, 2])),
    )
    return ObjMesh(v, torch.from_numpy(np.ascontiguousarray(idx[:, :, 0])), extras)


def _as_rows(x: Tensor, cols: int, name: str, what: str) -> Tensor:
    """(N, cols); an empty tensor of any shape (e.g. torch.tensor([])) is (0, cols), as PyTorch3D accepts."""
    if x.numel() == 0 and (x.dim() != 2 or x.shape[1] != cols):
        return x.reshape(0, cols)
    if x.dim() != 2 or x.shape[1] != cols:
        raise ValueError(f"{name} must be empty or of shape ({what}, {cols}), got {tuple(x.shape)}")
    return x


def save_obj(
    path: str | os.PathLike,
    verts: Tensor,
    faces: Tensor,
    decimal_places: int | None = None,
    *,
    normals: Tensor | None = None,
    faces_normals_idx: Tensor | None = None,
    verts_uvs: Tensor | None = None,
    faces_uvs: Tensor | None = None,
    overwrite: bool = False,
) -> None:
    """Write verts (V, 3) and faces (F, 3) (0-based) to an .obj, with PyTorch3D `save_obj`'s arguments
    (io/obj_io.py; no path_manager, no texture_map) and its exact text (`_save`, checked against
    tests/test_io_obj.py::test_save_obj and test_save_obj_with_normal):

    * every number as `"%f"` (6 decimals), or `"%.{decimal_places}f"`;
    * `v x y z` lines, then `vn x y z` (normals given), then `vt u v` (verts_uvs given), each ending in "\\n";
    * then the faces, 1-based: `f a b c`, `f a/t b/t c/t`, `f a//n ...` or `f a/t/n ...`, joined by "\\n"
      with **no newline after the last face** (a file without faces ends with its last "\\n").

    Optional: normals (N, 3) with faces_normals_idx (F, 3), verts_uvs (T, 2) with faces_uvs (F, 3); -1 in
    faces_uvs / faces_normals_idx (as `load_obj` returns) leaves that index out of the corner, so
    load -> save -> load keeps faces, faces_uvs and faces_normals exactly (values to the written decimals).
    Face indices outside [0, V) warn "Faces have invalid indices" and are written anyway (PyTorch3D);
    empty verts and faces warn "Empty 'verts' and 'faces' arguments provided" and write an empty file.
    Refuses to replace an existing file unless overwrite=True (FileExistsError), unlike PyTorch3D.
    """
    path = Path(path)
    verts = _as_rows(verts, 3, "verts", "V")
    faces = _as_rows(faces, 3, "faces", "F")
    if (normals is None) != (faces_normals_idx is None):
        raise ValueError("normals and faces_normals_idx must be given together")
    if (verts_uvs is None) != (faces_uvs is None):
        raise ValueError("verts_uvs and faces_uvs must be given together")
    if normals is not None:
        normals = _as_rows(normals, 3, "normals", "N")
        faces_normals_idx = _as_rows(faces_normals_idx, 3, "faces_normals_idx", "F")
    if verts_uvs is not None:
        verts_uvs = _as_rows(verts_uvs, 2, "verts_uvs", "T")
        faces_uvs = _as_rows(faces_uvs, 3, "faces_uvs", "F")
    for name, idx, values in (
        ("faces_uvs", faces_uvs, verts_uvs),
        ("faces_normals_idx", faces_normals_idx, normals),
    ):
        if idx is None:
            continue
        if idx.shape != faces.shape:
            raise ValueError(
                f"{name} must have shape {tuple(faces.shape)} like faces, got {tuple(idx.shape)}"
            )
        if idx.numel() and (int(idx.min()) < -1 or int(idx.max()) >= values.shape[0]):
            raise ValueError(
                f"{name} values must be in [-1, {values.shape[0]}) (-1 = no index for that corner), "
                f"got [{int(idx.min())}, {int(idx.max())}]"
            )
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")

    if verts.shape[0] == 0 and faces.shape[0] == 0:
        warnings.warn("Empty 'verts' and 'faces' arguments provided", UserWarning, stacklevel=2)
        path.write_text("", encoding="utf-8")
        return
    float_str = "%f" if decimal_places is None else f"%.{int(decimal_places)}f"

    def rows(prefix: str, x: Tensor) -> list[str]:
        return [
            prefix + " ".join(float_str % c for c in r) + "\n" for r in x.detach().cpu().double().tolist()
        ]

    text = rows("v ", verts)
    if normals is not None:
        text += rows("vn ", normals)
    if verts_uvs is not None:
        text += rows("vt ", verts_uvs)
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= verts.shape[0]):
        warnings.warn(
            f"Faces have invalid indices: faces must lie in [0, {verts.shape[0]}), got "
            f"[{int(faces.min())}, {int(faces.max())}]; written anyway (PyTorch3D)",
            UserWarning,
            stacklevel=2,
        )
    f1 = (faces.detach().cpu().long() + 1).tolist()
    zeros = [[0, 0, 0]] * len(f1)
    t1 = (faces_uvs.detach().cpu().long() + 1).tolist() if faces_uvs is not None else zeros  # 0 = none
    n1 = (faces_normals_idx.detach().cpu().long() + 1).tolist() if faces_normals_idx is not None else zeros

    def corner(v: int, t: int, n: int) -> str:
        if n > 0:
            return f"{v}/{t}/{n}" if t > 0 else f"{v}//{n}"
        return f"{v}/{t}" if t > 0 else f"{v}"

    face_lines = ["f " + " ".join(corner(*c) for c in zip(fv, ft, fn)) for fv, ft, fn in zip(f1, t1, n1)]
    path.write_text("".join(text) + "\n".join(face_lines), encoding="utf-8")
