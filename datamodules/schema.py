"""The sample schemas of the three families: which keys a reader's sample holds.

Every reader of one family returns the same schema, so that one datamodule can mix them. A reader class
declares the schema it returns as its `SCHEMA` class attribute (a key of `SCHEMAS`), and so does a
datamodule; the entry builder (`datamodules.entries`) refuses a reader of another schema before any file is
opened. `check_sample` checks a sample against its schema (tests of readers, debugging a new reader).

Shapes are per sample (the datamodule's collate adds the batch dimension B):
- "depth": `image` (3, H, W) float in [0, 1]; `depth` (1, H, W) float (metres when `depth_type` is
  "absolute"); `valid` (1, H, W) bool; `depth_type` one of `losses.depth.DEPTH_TYPES`; `name` str.
  Optional: `intrinsics` (3, 3) in 0-based pixels; `ordinal` (M, 5) (yA, xA, yB, xB, rel) 0-based pixels,
  rel +1 when A is farther and -1 when nearer; `max_depth` float metres.
- "category" (TTP): `image` (3, H, W); `keypoints` (K, 3) 0-based pixel x, y in the original image and
  visibility; `bbox` (4,) 0-based pixels x1, y1, x2, y2; `name`. Optional: `mask` (1, H, W) (PASCAL3D+
  ships none: a reader without a configured mask source leaves it out, and the losses that need it say so),
  `sfm_pose` (7,) CMR's (s, tx, ty, qw, qx, qy, qz), `cad_index` (PASCAL3D+'s 1-based CAD model), and the
  synthetic category's ground truth (`true_*`).
- "point_cloud": `image` (3, H, W); `mask` (1, H, W); `pose` (2,) azimuth, elevation in radians; `points`
  (P, 3) ground truth; `name`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple


class Schema(NamedTuple):
    """Keys of one sample schema: every sample has all `required` keys and may have the `optional` ones."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]


SCHEMAS: dict[str, Schema] = {
    "depth": Schema(
        "depth", ("image", "depth", "valid", "depth_type", "name"), ("intrinsics", "ordinal", "max_depth")
    ),
    "category": Schema(
        "category",
        ("image", "keypoints", "bbox", "name"),
        (
            "mask",
            "sfm_pose",
            "cad_index",
            "true_rotation",
            "true_scale",
            "true_translation",
            "true_verts",
            "true_coeffs",
        ),
    ),
    "point_cloud": Schema("point_cloud", ("image", "mask", "pose", "points", "name"), ()),
}
"""Schema name -> its keys; the names are the values of the readers' and datamodules' `SCHEMA`."""


def get_schema(schema: str) -> Schema:
    """The `Schema` named `schema`, or ValueError naming the argument and the known schemas."""
    if schema not in SCHEMAS:
        raise ValueError(f"schema: expected one of {', '.join(map(repr, SCHEMAS))}, got {schema!r}")
    return SCHEMAS[schema]


def check_sample(
    sample: Mapping[str, Any], schema: str, where: str, strict: bool = False
) -> Mapping[str, Any]:
    """Raise ValueError naming `where`, the missing key(s) and the schema when `sample` lacks a required key.

    Args:
        sample: one sample (a dict), e.g. `reader[0]`.
        schema: a key of `SCHEMAS`.
        where: what the sample is, for the message (e.g. "nyu[0]" or "data.train[1] (kitti)").
        strict: also refuse keys that are neither required nor optional.
    Returns:
        `sample`, unchanged.
    """
    spec = get_schema(schema)
    if not isinstance(sample, Mapping):
        raise ValueError(f"{where}: expected a dict sample of schema {schema!r}, got {type(sample).__name__}")
    missing = [k for k in spec.required if k not in sample]
    if missing:
        raise ValueError(
            f"{where}: sample lacks key(s) {', '.join(map(repr, missing))} of schema {schema!r} "
            f"(required: {', '.join(spec.required)}; has: {', '.join(map(str, sample))})"
        )
    if strict:
        unknown = [k for k in sample if k not in spec.required + spec.optional]
        if unknown:
            raise ValueError(
                f"{where}: sample has key(s) {', '.join(map(repr, unknown))} outside schema {schema!r} "
                f"(required: {', '.join(spec.required)}; optional: {', '.join(spec.optional) or 'none'})"
            )
    return sample
