"""Tests of geometry.mesh_io: .obj parsing, round trips, overwrite refusal, errors with line numbers."""

from __future__ import annotations

import pytest
import torch

from geometry.mesh import ico_sphere
from geometry.mesh_io import load_obj, save_obj

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
    v2, f2, ex = load_obj(path)  # exact: a repr round trip
    assert torch.equal(v2, verts), f"verts changed by {float((v2 - verts).abs().max()):.2e}"
    assert torch.equal(f2, faces) and torch.equal(ex.verts_uvs, uvs) and torch.equal(ex.faces_uvs, fuv)
    assert ex.normals is None and ex.faces_normals is None


def test_refuses_to_overwrite(tmp_path):
    verts, faces = ico_sphere(0)
    path = tmp_path / "a.obj"
    save_obj(path, verts, faces)
    with pytest.raises(FileExistsError, match="a.obj"):
        save_obj(path, 2 * verts, faces)
    assert torch.equal(load_obj(path).verts, verts), "the existing file was modified"  # exact: repr
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
        ("f 1 2 9", "out of range"),
        ("f 0 1 2", "out of range"),
        ("f 1/7 2 3", "texture index 7 out of range"),
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
    with pytest.raises(ValueError, match="out of range"):
        save_obj(tmp_path / "x.obj", verts, faces + 12)
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
    save_obj(out, a.verts, a.faces, a.extras.verts_uvs, a.extras.faces_uvs)
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
            save_obj(tmp_path / "x.obj", verts, faces, uvs, torch.tensor(bad))
    assert not (tmp_path / "x.obj").exists()
