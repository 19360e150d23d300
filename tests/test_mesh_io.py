"""Tests of geometry.mesh_io: .obj parsing, round trips, overwrite refusal, errors with line numbers."""

from __future__ import annotations

import warnings

import pytest
import torch

from geometry.mesh import ico_sphere
from geometry.mesh_io import load_obj, save_obj
from helpers import assert_close

OBJ = """# a comment line
mtllib thing.mtl
o thing
v 0 0 0
v 1 0 0   # trailing comment
v 1 1 0 1.0
v 0 1 0 0.5 0.5 0.5
v 0.5 0.5 \\
  1
vt 0 0
vt 1 0
vt 1 1
vn 0 0 1
vn 0 0 -1
g group1
usemtl mat
s off
f 1/1/1 2/2/1 3/3/1 4/1/1
f -5//-1 -1//-1 -4//2
f 2/2 3/3 5/1
f 1 2 3 4 5
"""


def test_load_obj_features(tmp_path):
    path = tmp_path / "m.obj"
    path.write_text(OBJ)
    verts, faces, extras = load_obj(path)
    assert verts.dtype == torch.float32 and faces.dtype == torch.int64
    # exact float comparisons in this file: values parsed from text, with no arithmetic (decimals that
    # float32 holds exactly, or save_obj's repr, whose text <-> float round trip is exact on any machine)
    assert torch.equal(verts, torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.5, 0.5, 1.0]]))
    expected_faces = [
        [0, 1, 2], [0, 2, 3],  # quad as a fan
        [0, 4, 1],  # negative indices count back from the last vertex defined so far
        [1, 2, 4],
        [0, 1, 2], [0, 2, 3], [0, 3, 4],  # pentagon fan
    ]  # fmt: skip
    assert faces.tolist() == expected_faces
    assert torch.equal(extras.verts_uvs, torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]))
    assert extras.faces_uvs.tolist() == [[0, 1, 2], [0, 2, 0], [-1, -1, -1], [1, 2, 0]] + [[-1, -1, -1]] * 3
    assert torch.equal(extras.normals, torch.tensor([[0.0, 0, 1], [0, 0, -1]]))
    assert extras.faces_normals.tolist() == [[0, 0, 0], [0, 0, 0], [1, 1, 1]] + [[-1, -1, -1]] * 4


def test_round_trip_with_uvs(tmp_path):
    verts, faces = ico_sphere(2)
    verts = verts + 1e-3 * torch.randn_like(verts)
    uvs = torch.rand(50, 2)
    fuv = torch.randint(0, 50, faces.shape)
    path = tmp_path / "sphere.obj"
    save_obj(path, verts, faces, verts_uvs=uvs, faces_uvs=fuv)
    v2, f2, ex = load_obj(path)
    # "%f" (PyTorch3D's default): 6 decimals, so |error| <= 5e-7 plus the float32 rounding of the value read
    assert_close(v2, verts, "verts", atol=5e-7, rtol=1.2e-7)
    assert_close(ex.verts_uvs, uvs, "verts_uvs", atol=5e-7, rtol=1.2e-7)
    assert torch.equal(f2, faces) and torch.equal(ex.faces_uvs, fuv)
    assert ex.normals is None and ex.faces_normals.tolist() == [[-1, -1, -1]] * faces.shape[0]


def test_refuses_to_overwrite(tmp_path):
    verts, faces = ico_sphere(0)
    path = tmp_path / "a.obj"
    save_obj(path, verts, faces)
    with pytest.raises(FileExistsError, match="a.obj"):
        save_obj(path, 2 * verts, faces)
    # exact: ico_sphere(0) holds 4-decimal constants, which "%f" writes and float32 reads back unchanged
    assert torch.equal(load_obj(path).verts, verts), "the existing file was modified"
    save_obj(path, 2 * verts, faces, overwrite=True)
    assert torch.equal(load_obj(path).verts, 2 * verts)
    save_obj(tmp_path / "b.obj", verts, faces, decimal_places=2)
    assert (load_obj(tmp_path / "b.obj").verts - verts).abs().max() <= 0.005 + 1e-7


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("v 1 2", "'v' needs"),
        ("v 1 2 x", "not a number"),
        ("vn 1 2", "'vn' needs"),
        ("f 1 2", "at least 3"),
        ("f 1 2 a", "not an integer"),
        ("f 1/1/1/1 2 3", "malformed"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, bad_line, message):
    path = tmp_path / "bad.obj"
    path.write_text(f"# header\nv 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\n{bad_line}\n")
    with pytest.raises(ValueError, match=message) as info:
        load_obj(path)
    assert "bad.obj:6:" in str(info.value), str(info.value)


def test_save_checks_shapes(tmp_path):
    verts, faces = ico_sphere(0)
    with pytest.raises(ValueError, match="verts"):
        save_obj(tmp_path / "x.obj", verts[:, :2], faces)
    with pytest.raises(ValueError, match="normals"):
        save_obj(tmp_path / "x.obj", verts, faces, normals=torch.rand(3, 3))
    with pytest.raises(ValueError, match="together"):
        save_obj(tmp_path / "x.obj", verts, faces, verts_uvs=torch.rand(3, 2))
    assert not (tmp_path / "x.obj").exists()


def test_round_trip_of_partial_texture_coordinates_is_exact(tmp_path):
    # regression: corners without vt (faces_uvs = -1) were written as "2/0", which no reader accepts
    src = tmp_path / "mixed.obj"
    src.write_text(
        "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nvt 0 0\nvt 1 0\nvt 0 1\nf 1/1 2/2 3/3\nf 2 4 3\nf 4/3 3 2/1\n"
    )
    a = load_obj(src)
    assert a.extras.faces_uvs.tolist() == [[0, 1, 2], [-1, -1, -1], [2, -1, 0]], f"{a.extras.faces_uvs}"
    out = tmp_path / "out.obj"
    save_obj(out, a.verts, a.faces, verts_uvs=a.extras.verts_uvs, faces_uvs=a.extras.faces_uvs)
    face_lines = [ln for ln in out.read_text().splitlines() if ln.startswith("f ")]
    assert face_lines == ["f 1/1 2/2 3/3", "f 2 4 3", "f 4/3 3 2/1"], f"written {face_lines}"
    b = load_obj(out)
    for name, x, y in [  # exact: text of the same values, parsed twice
        ("verts", a.verts, b.verts),
        ("faces", a.faces, b.faces),
        ("verts_uvs", a.extras.verts_uvs, b.extras.verts_uvs),
        ("faces_uvs", a.extras.faces_uvs, b.extras.faces_uvs),
    ]:
        assert torch.equal(x, y), f"{name} differs after the round trip: {x} vs {y}"


def test_save_checks_faces_uvs_range(tmp_path):
    verts, faces = torch.rand(3, 3), torch.tensor([[0, 1, 2]])
    uvs = torch.rand(2, 2)
    for bad in ([[0, 1, 2]], [[0, -2, 1]]):
        with pytest.raises(ValueError, match="faces_uvs"):
            save_obj(tmp_path / "x.obj", verts, faces, verts_uvs=uvs, faces_uvs=torch.tensor(bad))
    assert not (tmp_path / "x.obj").exists()


# ------------------------------------------------------------------------------------------------------------
# PyTorch3D parity (pytorch3d/io/obj_io.py, tests/test_io_obj.py)


def _write(tmp_path, name: str, lines: list[str]):
    path = tmp_path / name
    path.write_text("\n".join(lines))
    return path


@pytest.mark.parametrize(
    "face, kind, expected_faces, expected_uvs",
    [
        # test_load_obj_error_invalid_vertex_indices: "f -2 5 1" with 3 verts; kept as [-2 + 3, 5 - 1, 0]
        ("f -2 5 1", "vertex", [[1, 4, 0]], [[-1, -1, -1]]),
        # test_load_obj_error_invalid_normal_indices: "f -2/2 2/4 1/1" with 3 vn and no vt (texture slot)
        ("f -2/2 2/4 1/1", "texture", [[1, 1, 0]], [[1, 3, 0]]),
        ("f 0 1 2", "vertex", [[0, 0, 1]], [[-1, -1, -1]]),  # 0 is read as 0 (PyTorch3D), but warned about
    ],
)
def test_out_of_range_face_indices_warn_and_keep_the_face(tmp_path, face, kind, expected_faces, expected_uvs):
    # PyTorch3D io/obj_io.py `_format_faces_indices` -> io/utils.py `_check_faces_indices`:
    # warnings.warn("Faces have invalid indices") and the indices are returned unchanged (no face dropped).
    path = _write(tmp_path, "bad.obj", ["v 0.1 0.2 0.3"] * 3 + ["vn 0.1 0.2 0.3"] * 3 + [face])
    with pytest.warns(UserWarning, match="Faces have invalid indices") as record:
        verts, faces, extras = load_obj(path)
    message = str(record[0].message)
    assert "bad.obj:7" in message and kind in message, message  # our rule: the file and line are named
    assert faces.tolist() == expected_faces
    assert extras.faces_uvs.tolist() == expected_uvs
    assert verts.shape == (3, 3)


def test_texture_coordinates_without_face_uvs(tmp_path):
    # PyTorch3D `_load_obj`: aux.verts_uvs is the (T, 2) vt list whenever there are vt lines, and
    # faces.textures_idx is padded with -1 where faces have no vt (test_load_obj_normals_only / simple).
    path = _write(tmp_path, "m.obj", ["v 0 0 0", "v 1 0 0", "v 0 1 0", "vt 0.25 0.5", "vt 1 1", "f 1 2 3"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        verts, faces, extras = load_obj(path)
    assert torch.equal(extras.verts_uvs, torch.tensor([[0.25, 0.5], [1.0, 1.0]]))  # exact: parsed decimals
    assert extras.faces_uvs.tolist() == [[-1, -1, -1]] and extras.faces_normals.tolist() == [[-1, -1, -1]]
    assert extras.normals is None
    out = tmp_path / "out.obj"
    save_obj(out, verts, faces, verts_uvs=extras.verts_uvs, faces_uvs=extras.faces_uvs)
    assert out.read_text() == (
        "v 0.000000 0.000000 0.000000\nv 1.000000 0.000000 0.000000\nv 0.000000 1.000000 0.000000\n"
        "vt 0.250000 0.500000\nvt 1.000000 1.000000\nf 1 2 3"
    )


def test_save_obj_text_as_pytorch3d(tmp_path):
    # PyTorch3D tests/test_io_obj.py::test_save_obj and ::test_save_obj_with_normal (exact file text:
    # "%.2f", "v ..." lines, then "vn ...", faces "f a b c" / "f a//n ...", no newline after the last face)
    verts = torch.tensor([[0.01, 0.2, 0.301], [0.2, 0.03, 0.408], [0.3, 0.4, 0.05], [0.6, 0.7, 0.8]])
    faces = torch.tensor([[0, 2, 1], [0, 1, 2], [3, 2, 1], [3, 1, 0]])
    v_lines = ["v 0.01 0.20 0.30", "v 0.20 0.03 0.41", "v 0.30 0.40 0.05", "v 0.60 0.70 0.80"]
    save_obj(tmp_path / "a.obj", verts, faces, decimal_places=2)
    assert (tmp_path / "a.obj").read_text() == "\n".join(
        v_lines + ["f 1 3 2", "f 1 2 3", "f 4 3 2", "f 4 2 1"]
    )
    normals = torch.tensor(
        [[0.02, 0.5, 0.73], [0.3, 0.03, 0.361], [0.32, 0.12, 0.47], [0.36, 0.17, 0.9], [0.40, 0.7, 0.19],
         [1.0, 0.00, 0.000], [0.00, 1.00, 0.00], [0.00, 0.00, 1.0]]
    )  # fmt: skip
    fn = torch.tensor([[0, 1, 2], [2, 3, 4], [4, 5, 6], [6, 7, 0]])
    save_obj(tmp_path / "n.obj", verts, faces, 2, normals=normals, faces_normals_idx=fn)
    expected = v_lines + [
        "vn 0.02 0.50 0.73", "vn 0.30 0.03 0.36", "vn 0.32 0.12 0.47", "vn 0.36 0.17 0.90",
        "vn 0.40 0.70 0.19", "vn 1.00 0.00 0.00", "vn 0.00 1.00 0.00", "vn 0.00 0.00 1.00",
        "f 1//1 3//2 2//3", "f 1//3 2//4 3//5", "f 4//5 3//6 2//7", "f 4//7 2//8 1//1",
    ]  # fmt: skip
    assert (tmp_path / "n.obj").read_text() == "\n".join(expected)
    # default precision: "%f" (6 decimals); uv + normal corners "v/t/n"
    save_obj(
        tmp_path / "d.obj", verts[:3], faces[:1], normals=normals[:1], faces_normals_idx=torch.zeros(1, 3).long(),
        verts_uvs=torch.tensor([[0.5, -0.25]]), faces_uvs=torch.tensor([[0, -1, 0]]),
    )  # fmt: skip
    assert (tmp_path / "d.obj").read_text() == (
        "v 0.010000 0.200000 0.301000\nv 0.200000 0.030000 0.408000\nv 0.300000 0.400000 0.050000\n"
        "vn 0.020000 0.500000 0.730000\nvt 0.500000 -0.250000\nf 1/1/1 3//1 2/1/1"
    )
    b = load_obj(tmp_path / "d.obj")
    assert b.extras.faces_uvs.tolist() == [[0, -1, 0]] and b.extras.faces_normals.tolist() == [[0, 0, 0]]


def test_empty_meshes_save_and_load(tmp_path):
    # PyTorch3D tests/test_io_obj.py::test_empty_save_load_obj
    def save_load(name, verts, faces):
        save_obj(tmp_path / name, verts, faces)
        return load_obj(tmp_path / name)

    verts = torch.tensor([[0.1, 0.2, 0.3]])
    for faces in (torch.tensor([], dtype=torch.int64), torch.zeros(0, 3, dtype=torch.int64)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            v, f, ex = save_load(f"verts_only_{faces.dim()}.obj", verts, faces)
        assert_close(v, verts, "verts")
        assert f.shape == (0, 3) and f.dtype == torch.int64 and ex.faces_uvs.shape == (0, 3)
    assert (tmp_path / "verts_only_1.obj").read_text() == "v 0.100000 0.200000 0.300000\n"
    # faces + empty vertices: "Faces have invalid indices" on save (and load), written anyway
    for empty in (torch.tensor([]), torch.zeros(0, 3)):
        with pytest.warns(UserWarning, match="Faces have invalid indices"):
            v, f, _ = save_load(f"faces_only_{empty.dim()}.obj", empty, torch.tensor([[0, 1, 2]]))
        assert v.shape == (0, 3) and v.dtype == torch.float32 and f.tolist() == [[0, 1, 2]]
    # empty vertices + empty faces: a warning and an empty file
    for i, (ev, ef) in enumerate(
        [
            (torch.tensor([]), torch.tensor([], dtype=torch.int64)),
            (torch.zeros(0, 3), torch.zeros(0, 3).long()),
        ]
    ):
        with pytest.warns(UserWarning, match="Empty 'verts' and 'faces' arguments provided"):
            v, f, ex = save_load(f"empty_{i}.obj", ev, ef)
        assert (tmp_path / f"empty_{i}.obj").read_text() == ""
        assert v.shape == (0, 3) and f.shape == (0, 3) and ex.verts_uvs is None and ex.normals is None
    # out-of-range faces on save: PyTorch3D test_save_obj_invalid_indices (warn, not refuse)
    for bad in ([[0, 1, 2]], [[-1, 0, 1]]):
        with pytest.warns(UserWarning, match="Faces have invalid indices"):
            save_obj(tmp_path / "bad.obj", verts, torch.tensor(bad), overwrite=True)
