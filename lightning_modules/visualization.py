"""Rendering of tensors into pictures for loggers (shared by the families' callbacks).

`colorize` maps a scalar map to viridis colours; `render_figure` lays panels out side by side with a title
above each and a colour bar with its value range and unit beside each colorized one, drawn with PIL (no
matplotlib needed). All pure functions: tensors in, a (3, H, W) tensor or an (H, W, 3) uint8 array out.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

# Viridis anchor colours at 0, 0.25, 0.5, 0.75, 1 (matplotlib's viridis sampled at those points).
_VIRIDIS = torch.tensor(
    [
        [0.267, 0.005, 0.329],
        [0.229, 0.322, 0.546],
        [0.128, 0.567, 0.551],
        [0.369, 0.789, 0.383],
        [0.993, 0.906, 0.144],
    ]
)


def colorize(
    x: torch.Tensor, valid: torch.Tensor | None = None, lo: float | None = None, hi: float | None = None
):
    """Map a (H, W) map to a (3, H, W) viridis image in [0, 1]; invalid pixels black.

    lo/hi default to the 2nd/98th percentiles of the valid values.
    """
    x = x.detach().float().cpu()
    valid = torch.isfinite(x) if valid is None else valid.detach().cpu().bool() & torch.isfinite(x)
    vals = x[valid]
    if vals.numel() == 0:
        return torch.zeros(3, *x.shape)
    lo = float(torch.quantile(vals, 0.02)) if lo is None else lo
    hi = float(torch.quantile(vals, 0.98)) if hi is None else hi
    t = ((x - lo) / max(hi - lo, 1e-12)).clamp(0, 1).nan_to_num(0.0) * (len(_VIRIDIS) - 1)
    i0 = t.floor().long().clamp(max=len(_VIRIDIS) - 2)
    w = (t - i0).unsqueeze(-1)
    rgb = _VIRIDIS[i0] * (1 - w) + _VIRIDIS[i0 + 1] * w  # (H, W, 3)
    rgb[~valid] = 0
    return rgb.permute(2, 0, 1)


def to_uint8_hwc(img: torch.Tensor):
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8 numpy array."""
    return (img.detach().float().cpu().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


# ------------------------------------------------------------------------------------------------ figures
class ColorBar(NamedTuple):
    """The value range `lo` (bottom) .. `hi` (top) of a colorized panel, labelled with `unit` (may be "")."""

    lo: float
    hi: float
    unit: str = ""


class Panel(NamedTuple):
    """One tile of a figure: `image` (3, H, W) in [0, 1], its `title`, and its colour bar (None: none)."""

    image: torch.Tensor
    title: str
    colorbar: ColorBar | None = None


class Figure(NamedTuple):
    """A rendered figure: `image` (H, W, 3) uint8; `tiles[i]` and `bars[i]` the (x0, y0, x1, y1) pixel
    boxes (x1, y1 exclusive) of panel i's image and of its colour bar (None without one)."""

    image: np.ndarray
    tiles: list[tuple[int, int, int, int]]
    bars: list[tuple[int, int, int, int] | None]


def colorbar(lo: float, hi: float, height: int, width: int) -> torch.Tensor:
    """A vertical viridis colour bar (3, height, width): row 0 is `colorize(hi)`, the last row `colorize(lo)`,
    linear in between (the colours `colorize(x, lo=lo, hi=hi)` gives the values of a panel)."""
    if height < 1 or width < 1:
        raise ValueError(f"Expected a colour bar of at least 1 x 1 pixels, got {height} x {width}")
    values = torch.linspace(hi, lo, height) if height > 1 else torch.tensor([float(hi)])
    return colorize(values[:, None].expand(height, width), lo=lo, hi=hi)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # scalable (Pillow >= 10.1 with FreeType)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _text_width(font, text: str) -> int:
    x0, _, x1, _ = font.getbbox(text) if text else (0, 0, 0, 0)
    return int(x1 - x0)


def _wrap(text: str, font, width: int) -> list[str]:
    """Greedy word wrap of `text` into lines no wider than `width` pixels (a long word gets its own line)."""
    lines: list[str] = []
    for word in text.split():
        if lines and _text_width(font, f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _label(value: float, unit: str) -> str:
    return f"{value:.3g} {unit}".strip()


def render_figure(panels: list[Panel], min_height: int = 160) -> Figure:
    """Panels side by side, each with its title above and, if it has one, a labelled colour bar on its right.

    Pure function (no logger, no matplotlib): draws with PIL on a white background, black text.

    Args:
        panels: `Panel`s whose images are (3, H, W) in [0, 1], all of one height H (widths may differ).
        min_height: images smaller than this are enlarged by an integer factor (nearest neighbour, so each
            pixel stays one flat colour) to at least this height; larger ones are kept as they are.
    Returns:
        `Figure`: the uint8 (H', W', 3) picture and each panel's image and colour bar boxes. A colour bar is
        as tall as its panel's image and labelled with hi (top) and lo (bottom) and the unit.
    """
    from PIL import Image, ImageDraw

    if not panels:
        raise ValueError("Expected at least one panel, got none")
    for i, p in enumerate(panels):
        if not torch.is_tensor(p.image) or p.image.dim() != 3 or p.image.shape[0] != 3:
            shape = tuple(p.image.shape) if torch.is_tensor(p.image) else type(p.image).__name__
            raise ValueError(f"Expected panels[{i}].image to be of shape (3, H, W), got {shape}")
    H = panels[0].image.shape[1]
    if any(p.image.shape[1] != H for p in panels):
        raise ValueError(f"Expected panel images of one height, got {[tuple(p.image.shape) for p in panels]}")
    scale = max(1, -(-min_height // H))  # ceil
    Hs = H * scale
    font = _font(int(min(max(10, round(Hs / 16)), 24)))
    _, top, _, bottom = font.getbbox("Ag(|)")
    line_h = int(bottom - top) + 3
    pad = max(4, line_h // 3)
    bar_w = max(8, Hs // 16)

    widths, titles = [], []
    for p in panels:
        w = p.image.shape[2] * scale
        if p.colorbar is not None:
            labels = (_label(p.colorbar.hi, p.colorbar.unit), _label(p.colorbar.lo, p.colorbar.unit))
            w += pad + bar_w + pad + max(_text_width(font, t) for t in labels)
        widths.append(w)
        titles.append(_wrap(p.title, font, w))
    title_h = max(len(t) for t in titles) * line_h + pad
    gap = 3 * pad  # between panels
    width = 2 * pad + sum(widths) + gap * (len(widths) - 1)
    height = pad + title_h + Hs + pad
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)

    tiles, bars, text = [], [], []  # text: (x, y, string)
    x, y0 = pad, pad + title_h
    for p, w, lines in zip(panels, widths, titles):
        img = p.image.detach().float().cpu()
        img = img.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
        Ws = img.shape[2]
        canvas[y0 : y0 + Hs, x : x + Ws] = to_uint8_hwc(img)
        tiles.append((x, y0, x + Ws, y0 + Hs))
        text += [(x, pad + k * line_h, line) for k, line in enumerate(lines)]
        if p.colorbar is None:
            bars.append(None)
        else:
            cb = p.colorbar
            bx = x + Ws + pad
            canvas[y0 : y0 + Hs, bx : bx + bar_w] = to_uint8_hwc(colorbar(cb.lo, cb.hi, Hs, bar_w))
            bars.append((bx, y0, bx + bar_w, y0 + Hs))
            text.append((bx + bar_w + pad, y0, _label(cb.hi, cb.unit)))
            text.append((bx + bar_w + pad, y0 + Hs - line_h, _label(cb.lo, cb.unit)))
        x += w + gap
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    for tx, ty, s in text:
        draw.text((tx, ty - top), s, fill=(0, 0, 0), font=font)
    return Figure(np.asarray(picture).copy(), tiles, bars)
