"""Pictures of results: CMC curves, ranked-list grids (query + top-k with green/red borders), search pages."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from reidkit._io import atomic_write_bytes, atomic_write_text
from reidkit.data.records import Split

GREEN = (30, 170, 60)
RED = (210, 40, 40)
BLUE = (40, 90, 210)
GREY = (150, 150, 150)


@dataclass(frozen=True)
class RankedList:
    """One query and its ranked gallery results."""

    query_path: str
    gallery_paths: Sequence[str]
    matches: Sequence[bool]
    distances: Sequence[float]


def plot_cmc(curves: dict[str, np.ndarray], path: str | Path, *, max_rank: int = 20) -> None:
    """Write a PNG with one CMC curve per entry of ``curves`` (label -> cmc fractions)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 4), dpi=100)
    for label, cmc in curves.items():
        ranks = np.arange(1, min(max_rank, len(cmc)) + 1)
        axes.plot(ranks, 100 * np.asarray(cmc)[: len(ranks)], marker="o", markersize=3, label=label)
    axes.set_xlabel("rank")
    axes.set_ylabel("matching rate (%)")
    axes.set_ylim(0, 100)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    axes.set_title("CMC")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def _tile(path: str, size: tuple[int, int], colour: tuple[int, int, int], border: int = 4) -> Image.Image:
    height, width = size
    tile = Image.new("RGB", (width + 2 * border, height + 2 * border), colour)
    with Image.open(path) as image:
        tile.paste(image.convert("RGB").resize((width, height), Image.BILINEAR), (border, border))
    return tile


def ranked_grid(
    rows: Sequence[RankedList],
    path: str | Path,
    *,
    top_k: int = 10,
    size: tuple[int, int] = (128, 64),
    neutral: bool = False,
) -> None:
    """Write a PNG: one row per query (blue border), then its top-k (green = same id, red = other).

    ``neutral``: identities are unknown (a search result), so every result gets a grey border.
    """
    border, gap, label = 4, 6, 14
    tile_w, tile_h = size[1] + 2 * border, size[0] + 2 * border
    columns = top_k + 1
    canvas = Image.new(
        "RGB", (columns * tile_w + (columns + 1) * gap, len(rows) * (tile_h + label + gap) + gap), "white"
    )
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        top = gap + r * (tile_h + label + gap)
        canvas.paste(_tile(row.query_path, size, BLUE, border), (gap, top))
        draw.text((gap, top + tile_h), "query", fill=(0, 0, 0))
        for c, (gallery, match, distance) in enumerate(
            zip(row.gallery_paths[:top_k], row.matches[:top_k], row.distances[:top_k], strict=False)
        ):
            left = gap + (c + 1) * (tile_w + gap)
            colour = GREY if neutral else GREEN if match else RED
            canvas.paste(_tile(gallery, size, colour, border), (left, top))
            draw.text((left, top + tile_h), f"{c + 1}: {distance:.2f}", fill=(0, 0, 0))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def ranked_lists(split: Split, distmat: np.ndarray, *, queries: int = 6, top_k: int = 10) -> list[RankedList]:
    """Ranked gallery lists of a few evenly spread queries (for :func:`reidkit.viz.ranked_grid`).

    The gallery items the metric ignores (same id and camera as the query; the query image itself) are left out.
    """
    chosen = np.linspace(0, len(split.query) - 1, num=min(queries, len(split.query))).round().astype(int)
    rows = []
    for i in chosen:
        query = split.query[i]
        order = np.argsort(distmat[i], kind="stable")
        kept = [
            j
            for j in order
            if not (
                split.has_camids
                and split.gallery[j].pid == query.pid
                and split.gallery[j].camid == query.camid
            )
            and split.gallery[j].path != query.path
        ][:top_k]
        rows.append(
            RankedList(
                query.path,
                [split.gallery[j].path for j in kept],
                [split.gallery[j].pid == query.pid for j in kept],
                [float(distmat[i, j]) for j in kept],
            )
        )
    return rows


def _segments_html(identities: Sequence) -> str:
    """Sections of the results page: one per identity, a table of its segments with a player when there is a video."""
    import html

    sections = []
    for rank, answer in enumerate(identities, 1):
        who = (
            f"global id {answer.global_id}" if answer.global_id is not None else "tracklet without global id"
        )
        rows = []
        for segment in answer.segments:
            entry = segment.to_dict()
            thumbnail = Path(segment.thumbnail)
            image = f'<img src="{html.escape(thumbnail.resolve().as_uri())}">' if thumbnail.is_file() else ""
            times = f"{segment.start_time:.2f} – {segment.end_time:.2f} s"
            if entry["start_iso"]:
                times += f"<br>{html.escape(entry['start_iso'])} – {html.escape(entry['end_iso'])}"
            player = ""
            if segment.video:
                source = f"{Path(segment.video).resolve().as_uri()}#t={entry['video_start']:.3f},{entry['video_end']:.3f}"
                player = f'<video controls muted preload="metadata" src="{html.escape(source)}"></video>'
            rows.append(
                f"<tr><td>{image}</td><td>{html.escape(str(segment.camera))}</td><td>{times}</td>"
                f"<td>{segment.distance:.3f}</td><td>{player}</td></tr>"
            )
        sections.append(
            f"<section><h2>#{rank} {html.escape(who)} · distance {answer.distance:.3f} · "
            f"{html.escape(', '.join(answer.cameras))}</h2><p class=run>{html.escape(answer.run)}</p>"
            "<table><tr><th></th><th>camera</th><th>time</th><th>distance</th><th>video</th></tr>"
            f"{''.join(rows)}</table></section>"
        )
    return "".join(sections)


def write_results_page(path: str | Path, query: str, hits: Sequence, *, identities: Sequence = ()) -> None:
    """A static HTML page of a search: the query photo, the identities found in tracked video, then each hit.

    Args:
        path: the HTML file to write.
        query: the query photo.
        hits: :class:`reidkit.index.SearchHit` (``distance``, ``item.path``, ``item.camera``) shown as a grid.
        identities: :class:`reidkit.index.IdentityAnswer` shown as one table of segments each (thumbnail,
            camera, times, distance, and the segment's video when the camera has one).
    """
    import html

    cells = "".join(
        f'<figure><img src="{html.escape(Path(hit.item.path).resolve().as_uri())}">'
        f"<figcaption>#{rank} d={hit.distance:.3f}<br>cam {html.escape(str(hit.item.camera or '-'))}</figcaption></figure>"
        for rank, hit in enumerate(hits, 1)
    )
    page = (
        "<!doctype html><meta charset=utf-8><title>reidkit search</title>"
        "<style>body{font-family:sans-serif}figure{display:inline-block;margin:4px;text-align:center}"
        "img{height:160px;border:3px solid #ccc}figure.q img{border-color:#2858d2}"
        "table{border-collapse:collapse}td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left}"
        "td img{height:96px}video{height:120px}h2{font-size:16px;margin:18px 0 2px}.run{color:#667;margin:0}</style>"
        f'<figure class=q><img src="{html.escape(Path(query).resolve().as_uri())}"><figcaption>query</figcaption></figure>'
        f"{_segments_html(identities)}{cells}"
    )
    atomic_write_text(path, page)


def cluster_sheet(
    paths: Sequence[str],
    labels: np.ndarray,
    path: str | Path,
    *,
    clusters: int = 12,
    per_cluster: int = 12,
    size: tuple[int, int] = (96, 48),
    groups: np.ndarray | None = None,
) -> list[int]:
    """Write a PNG of the largest clusters: one row each, up to ``per_cluster`` images spread over its members.

    With ``groups`` (the tracklet of each image), a row shows images of as many different tracklets as it can,
    so a row of one person seen in many tracklets looks different from a row of one long tracklet.

    Returns:
        The labels of the rows, largest cluster first.
    """
    labels = np.asarray(labels)
    sizes = np.bincount(labels[labels >= 0]) if (labels >= 0).any() else np.zeros(0, dtype=np.int64)
    order = [int(c) for c in np.argsort(-sizes, kind="stable")[:clusters] if sizes[c] > 0]
    border, gap = 2, 4
    tile_w, tile_h = size[1] + 2 * border, size[0] + 2 * border
    canvas = Image.new(
        "RGB",
        (per_cluster * tile_w + (per_cluster + 1) * gap + 90, max(1, len(order)) * (tile_h + gap) + gap),
        "white",
    )
    draw = ImageDraw.Draw(canvas)
    for row, cluster in enumerate(order):
        members = np.flatnonzero(labels == cluster)
        if groups is None:  # spread over the members
            chosen = members[np.linspace(0, len(members) - 1, min(per_cluster, len(members))).astype(int)]
        else:  # round-robin over the member tracklets: the first image of each, then the second, ...
            by_group: dict[int, list[int]] = {}
            for member in members:
                by_group.setdefault(int(groups[member]), []).append(int(member))
            queues = list(by_group.values())
            chosen = [q[i] for i in range(max(map(len, queues))) for q in queues if i < len(q)][:per_cluster]
        top = gap + row * (tile_h + gap)
        count = len(np.unique(groups[labels == cluster])) if groups is not None else 0
        text = f"#{cluster}: {sizes[cluster]}" + (f"\n{count} tracks" if groups is not None else "")
        draw.text((gap, top + 4), text, fill=(0, 0, 0))
        for column, member in enumerate(chosen):
            canvas.paste(_tile(paths[member], size, GREY, border), (90 + gap + column * (tile_w + gap), top))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
    return order
