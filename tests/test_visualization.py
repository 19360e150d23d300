"""Tests of lightning_modules/visualization.py: colorize, colour bars and titled figures (pure functions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_modules.visualization import (
    ColorBar,
    Panel,
    colorbar,
    colorize,
    render_figure,
    to_uint8_hwc,
)

WHITE = np.array([255, 255, 255], dtype=np.uint8)
VIRIDIS_LOW, VIRIDIS_HIGH = (0.267, 0.005, 0.329), (0.993, 0.906, 0.144)  # matplotlib's viridis ends


def ramp(H=16, W=24) -> torch.Tensor:
    return torch.linspace(0.0, 1.0, W)[None].expand(H, W)


def four_panels(H=16, W=24, titles=("input", "predicted depth (m, median-aligned)", "ground truth", "err")):
    g = torch.Generator().manual_seed(0)
    return [
        Panel(torch.rand(3, H, W, generator=g), titles[0]),
        Panel(colorize(ramp(H, W) * 10, lo=2.0, hi=8.0), titles[1], ColorBar(2.0, 8.0, "m")),
        Panel(colorize(ramp(H, W) * 10, lo=2.0, hi=8.0), titles[2], ColorBar(2.0, 8.0, "m")),
        Panel(colorize(ramp(H, W), lo=0.0, hi=0.5), titles[3], ColorBar(0.0, 0.5)),
    ]


def crop(img: np.ndarray, box) -> np.ndarray:
    x0, y0, x1, y1 = box
    return img[y0:y1, x0:x1]


def test_colorbar_runs_from_hi_at_the_top_to_lo_at_the_bottom():
    lo, hi = 2.0, 8.0
    bar = colorbar(lo, hi, height=50, width=3)
    assert bar.shape == (3, 50, 3)
    top, bottom = bar[:, 0, 0], bar[:, -1, 0]
    assert torch.allclose(top, colorize(torch.tensor([[hi]]), lo=lo, hi=hi)[:, 0, 0])
    assert torch.allclose(bottom, colorize(torch.tensor([[lo]]), lo=lo, hi=hi)[:, 0, 0])
    assert torch.allclose(top, torch.tensor(VIRIDIS_HIGH)) and torch.allclose(
        bottom, torch.tensor(VIRIDIS_LOW)
    )
    # every row is the colour colorize gives its value, linear from hi down to lo
    values = torch.linspace(hi, lo, 50)[:, None]
    assert torch.allclose(bar[:, :, 0], colorize(values, lo=lo, hi=hi)[:, :, 0], atol=1e-6)
    assert torch.equal(bar[:, :, 0], bar[:, :, 2]), "columns of a bar are identical"
    # viridis gets brighter from low to high: the green channel rises monotonically up the bar
    assert (bar[1, :-1, 0] >= bar[1, 1:, 0]).all()


def test_figure_layout_panel_count_sizes_and_pixels():
    panels = four_panels()
    fig = render_figure(panels, min_height=160)
    img = fig.image
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert len(fig.tiles) == 4 and len(fig.bars) == 4
    assert fig.bars[0] is None and all(b is not None for b in fig.bars[1:])
    scale = 10  # ceil(160 / 16)
    for i, (p, tile) in enumerate(zip(panels, fig.tiles)):
        x0, y0, x1, y1 = tile
        assert (x1 - x0, y1 - y0) == (24 * scale, 16 * scale), f"panel {i}: tile {tile}"
        # the tile holds the panel image, each pixel enlarged to a flat scale x scale block
        big = p.image.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
        assert np.array_equal(crop(img, tile), to_uint8_hwc(big)), f"panel {i}: pixels differ"
    # left to right, one row, no overlaps, everything inside the picture, a title band above the tiles
    xs = [t for tile, bar in zip(fig.tiles, fig.bars) for t in (tile, bar) if t is not None]
    assert all(a[2] <= b[0] for a, b in zip(xs, xs[1:])), xs
    assert xs[-1][2] <= img.shape[1] and all(t[3] <= img.shape[0] for t in xs)
    assert all(t[1] == fig.tiles[0][1] > 0 for t in xs), "tiles and bars share one top edge below the titles"


def test_figure_colour_bar_pixels_follow_the_colormap():
    panels = four_panels()
    fig = render_figure(panels)
    for p, tile, bar in zip(panels, fig.tiles, fig.bars):
        if bar is None:
            continue
        cb = p.colorbar
        assert (bar[1], bar[3]) == (tile[1], tile[3]), "a colour bar is as tall as its panel's image"
        assert bar[0] > tile[2], "the colour bar is on the panel's right"
        pixels = crop(fig.image, bar)  # (h, w, 3)
        hi_rgb = to_uint8_hwc(colorize(torch.tensor([[cb.hi]]), lo=cb.lo, hi=cb.hi))[0, 0]
        lo_rgb = to_uint8_hwc(colorize(torch.tensor([[cb.lo]]), lo=cb.lo, hi=cb.hi))[0, 0]
        assert (pixels[0] == hi_rgb).all() and (pixels[-1] == lo_rgb).all(), (pixels[0, 0], pixels[-1, 0])
        assert not np.array_equal(hi_rgb, lo_rgb)
        # and the bar's colours are the panel's: a value in the panel has the bar's colour at its height
        expect = to_uint8_hwc(colorbar(cb.lo, cb.hi, bar[3] - bar[1], bar[2] - bar[0]))
        assert np.array_equal(pixels, expect)


def test_titles_and_colour_bar_labels_are_drawn_where_they_belong():
    titled = render_figure(four_panels())
    blank = render_figure(four_panels(titles=("", "", "", "")))
    for fig, has_title in ((titled, True), (blank, False)):
        top = fig.tiles[0][1]
        for i, (x0, _, x1, _) in enumerate(fig.tiles):
            band = fig.image[:top, x0:x1]  # the title band above panel i
            inked = bool((band != WHITE).any())
            assert inked == has_title, f"panel {i}: title ink {inked}, expected {has_title}"
    for i, (bar, tile) in enumerate(zip(titled.bars, titled.tiles)):
        right = titled.tiles[i + 1][0] if i + 1 < len(titled.tiles) else titled.image.shape[1]
        label_area = titled.image[tile[1] : tile[3], (bar[2] if bar else tile[2]) : right]
        assert bool((label_area != WHITE).any()) == (bar is not None), f"panel {i}: labels"


def test_large_images_are_not_enlarged_and_small_ones_reach_min_height():
    big = [Panel(torch.rand(3, 200, 50), "a", ColorBar(0.0, 1.0))]
    fig = render_figure(big, min_height=160)
    x0, y0, x1, y1 = fig.tiles[0]
    assert (x1 - x0, y1 - y0) == (50, 200)
    fig = render_figure([Panel(torch.rand(3, 7, 5), "b")], min_height=160)
    x0, y0, x1, y1 = fig.tiles[0]
    assert (y1 - y0, x1 - x0) == (161, 115)  # 7 * 23 >= 160 > 7 * 22


def test_figure_refuses_bad_panels():
    with pytest.raises(ValueError, match="at least one panel"):
        render_figure([])
    with pytest.raises(ValueError, match=r"panels\[1\].image to be of shape \(3, H, W\)"):
        render_figure([Panel(torch.rand(3, 4, 4), "a"), Panel(torch.rand(4, 4), "b")])
    with pytest.raises(ValueError, match="one height"):
        render_figure([Panel(torch.rand(3, 4, 4), "a"), Panel(torch.rand(3, 5, 4), "b")])
