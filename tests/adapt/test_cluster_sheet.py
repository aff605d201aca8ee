"""The contact sheet of the largest clusters: row order, the images of each row, round-robin over tracklets."""

from __future__ import annotations

import numpy as np
from PIL import Image

from reidkit.viz import cluster_sheet

SIZE = (20, 10)  # tile height, width
BORDER, GAP, LEFT = 2, 4, 90


def _images(tmp_path, colours):
    paths = []
    for index, colour in enumerate(colours):
        path = tmp_path / f"{index}.png"
        Image.fromarray(np.full((8, 4, 3), colour, np.uint8)).save(path)
        paths.append(str(path))
    return paths


def _tile_colour(sheet: np.ndarray, row: int, column: int) -> tuple[int, ...]:
    top = GAP + row * (SIZE[0] + 2 * BORDER + GAP) + BORDER + SIZE[0] // 2
    left = LEFT + GAP + column * (SIZE[1] + 2 * BORDER + GAP) + BORDER + SIZE[1] // 2
    return tuple(int(v) for v in sheet[top, left])


def test_rows_are_the_largest_clusters_with_their_own_images(tmp_path):
    labels = np.array([0, 1, 1, 1, -1, 2, 2, 0, 1])
    colours = [(10 * (label + 2), 0, 0) for label in labels]
    paths = _images(tmp_path, colours)
    out = tmp_path / "sheet.png"
    order = cluster_sheet(paths, labels, out, clusters=2, per_cluster=3, size=SIZE)
    assert order == [1, 0]  # 4 members, then 2 (ties broken by label)
    sheet = np.asarray(Image.open(out).convert("RGB"))
    assert [_tile_colour(sheet, 0, c)[0] for c in range(3)] == [30, 30, 30]
    assert [_tile_colour(sheet, 1, c)[0] for c in range(2)] == [20, 20]


def test_with_groups_a_row_shows_each_tracklet_before_repeating_one(tmp_path):
    labels = np.zeros(7, dtype=np.int64)
    groups = np.array([0, 0, 0, 0, 1, 1, 2])
    colours = [(40 + 60 * g, 0, 0) for g in groups]
    out = tmp_path / "sheet.png"
    cluster_sheet(_images(tmp_path, colours), labels, out, per_cluster=4, size=SIZE, groups=groups)
    sheet = np.asarray(Image.open(out).convert("RGB"))
    assert [_tile_colour(sheet, 0, c)[0] for c in range(4)] == [40, 100, 160, 40]
