"""The category template of a TTP model: a mesh from an .obj file (optionally subdivided) and the template
vertex of each annotated keypoint, or the synthetic category's own bird ("synthetic_bird").

An .obj template's keypoints come from a JSON file beside it (same stem, `.json`) or given explicitly:
`{"keypoint_vertices": [i_0, ..., i_{K-1}]}` (0-based vertex indices, in the dataset's keypoint order;
`datamodules.category.synthetic.save_template` writes this format). Subdivision keeps the original vertices
first (`geometry.subdivide_mesh`), so the indices stay valid.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import torch

from geometry import load_obj, subdivide_mesh

SYNTHETIC = "synthetic_bird"


class Template(NamedTuple):
    """verts (N, 3) float32, faces (F, 3) long, keypoint_vertices (K,) long (empty without keypoints)."""

    verts: torch.Tensor
    faces: torch.Tensor
    keypoint_vertices: torch.Tensor


def _keypoints_from_json(path: Path, num_verts: int) -> torch.Tensor:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the template's keypoint file ({e})") from e
    idx = meta.get("keypoint_vertices") if isinstance(meta, dict) else None
    if not isinstance(idx, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in idx):
        raise ValueError(f"{path}: expected a JSON object with 'keypoint_vertices', a list of vertex indices")
    bad = [i for i in idx if not 0 <= i < num_verts]
    if bad:
        raise ValueError(
            f"{path}: keypoint_vertices {bad} are outside the template's {num_verts} vertices (0-based)"
        )
    return torch.tensor(idx, dtype=torch.long)


def load_template(
    template: str, subdivide: int = 0, keypoints: str | None = None, synthetic_level: int = 3
) -> Template:
    """The template named by `template`: "synthetic_bird" (the synthetic category's mesh at icosphere level
    `synthetic_level`) or the path of an .obj file, subdivided `subdivide` times.

    Args:
        keypoints: JSON file of the keypoint vertices; None = the .obj's `.json` twin when it exists, else
            no keypoints.
    Raises:
        FileNotFoundError / ValueError naming the file that is missing, does not parse or whose keypoint
        indices exceed the template.
    """
    if subdivide < 0:
        raise ValueError(f"model.subdivide: expected >= 0, got {subdivide}")
    if template == SYNTHETIC:
        from datamodules.category.synthetic import bird_template

        tpl = bird_template(synthetic_level)
        verts, faces, kp = tpl.verts.float(), tpl.faces.long(), tpl.keypoint_vertices.long()
        if keypoints is not None:
            kp = _keypoints_from_json(Path(keypoints), verts.shape[0])
    else:
        path = Path(template)
        if path.suffix.lower() != ".obj":
            raise ValueError(
                f"model.template: expected {SYNTHETIC!r} or the path of an .obj file, got {template!r}"
            )
        if not path.is_file():
            raise FileNotFoundError(f"model.template: no file at {str(path)!r}")
        mesh = load_obj(path)
        verts, faces = mesh.verts.float(), mesh.faces.long()
        if verts.shape[0] < 4 or faces.shape[0] < 1:
            raise ValueError(
                f"{path}: expected a mesh with vertices and faces, got {verts.shape[0]} / {faces.shape[0]}"
            )
        kp_path = Path(keypoints) if keypoints is not None else path.with_suffix(".json")
        if keypoints is not None and not kp_path.is_file():
            raise FileNotFoundError(f"model.template_keypoints: no file at {str(kp_path)!r}")
        kp = (
            _keypoints_from_json(kp_path, verts.shape[0])
            if kp_path.is_file()
            else torch.zeros(0, dtype=torch.long)
        )
    for _ in range(subdivide):
        verts, faces = subdivide_mesh(verts, faces)
    return Template(verts.contiguous(), faces.contiguous(), kp)
