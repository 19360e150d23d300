"""GP2's results table (the official README's, saic-vul/geometry-preserving-de README.md "Checkpoints") from
a run's test metrics: NYU and TUM delta-1.25 error (% of bad pixels), Sintel and ETH3D AbsRel, DIW WHDR (%),
for GP2's two alignments (its eval.py prints both: "UTS", one scale; "UTSS", scale and shift in disparity).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

# (column, the test datasets' names that fill it (reader names, first found wins), metric, format)
COLUMNS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("NYU δ1.25 bad %", ("nyu",), "delta125_bad", ".2f"),
    ("TUM δ1.25 bad %", ("tum_hdf5", "tum"), "delta125_bad", ".2f"),
    ("Sintel AbsRel", ("sintel",), "absrel", ".3f"),
    ("DIW WHDR %", ("diw",), "whdr", ".2f"),
    ("ETH3D AbsRel", ("eth3d_gp2", "eth3d"), "absrel", ".3f"),
)
# the row's label and the key infix of its alignment (lightning_modules/gp2/module.py's logged keys: the
# main alignment without infix, the others as test/<dataset>/<alignment>/<metric>)
ROWS = (("UTS (median log-disparity)", ""), ("UTSS (lstsq disparity)", "lstsq_disparity/"))


def _value(test: Mapping[str, object], names: tuple[str, ...], infix: str, metric: str) -> float | None:
    for name in names:
        # WHDR depends only on the order of the predicted depths, which no positive-scale alignment changes
        key = f"test/{name}/whdr" if metric == "whdr" else f"test/{name}/{infix}{metric}"
        if key in test:
            v = test[key]
            return float(v) if isinstance(v, (int, float)) else math.nan  # non-finite values are strings
    return None


def gp2_readme_table(test: Mapping[str, object]) -> str | None:
    """The table as Markdown from a run's test metrics (metrics.json's "test" dict); None when no test
    dataset of the table is present. A dataset that is absent prints "-", a non-finite value "nan"."""
    cells = [[_value(test, names, infix, metric) for _, names, metric, _ in COLUMNS] for _, infix in ROWS]
    if all(v is None for row in cells for v in row):
        return None
    head = "| alignment | " + " | ".join(c[0] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for (label, _), row in zip(ROWS, cells):
        vals = ["-" if v is None else format(v, c[3]) for v, c in zip(row, COLUMNS)]
        lines.append(f"| {label} | " + " | ".join(vals) + " |")
    return "\n".join(lines)
