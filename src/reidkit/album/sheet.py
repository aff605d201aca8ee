"""The contact sheet of a clustered album: ``OUT/index.html``, one row per cluster, thumbnails in ``OUT/thumbs/``.

Rows are in cluster order (largest first), the unclustered images last. Each thumbnail links to its original
image by a relative path and names it in its tooltip. With known person ids (scored albums) every thumbnail is
captioned with its id, a row's heading names its most common person, and the images of other people in the row
get a red border, so merge errors show at a glance (photos of unknown identity are captioned "unknown", not
flagged).

The thumbnails are written to a fresh folder beside ``OUT/thumbs`` and swapped in when all are done; the page is
written atomically, after them.
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
from PIL import Image

from reidkit._io import atomic_write_text
from reidkit.errors import DatasetError

THUMBS = "thumbs"
PAGE = "index.html"
_JPEG_QUALITY = 85
_STYLE = """
body{font-family:system-ui,sans-serif;margin:16px;background:#fafafa;color:#222}
header p{margin:4px 0;color:#555}
section{background:#fff;border:1px solid #ddd;border-radius:6px;margin:12px 0;padding:8px 12px}
section.noise{background:#f1f1f1;border-style:dashed}
h2{font-size:16px;margin:4px 0 8px}h2 span{font-weight:normal;color:#666;margin-left:8px}
.thumbs{display:flex;flex-wrap:wrap;gap:6px}
figure{margin:0;text-align:center;font-size:11px;color:#444}
figure img{display:block;border:3px solid #ccc;border-radius:3px}
figure.other img{border-color:#d22828}
"""


@dataclass(frozen=True)
class Thumbnail:
    """A written thumbnail: its path relative to the output folder and its size in pixels."""

    path: str
    width: int
    height: int


def _thumbnail(source: str, target: Path, height: int) -> int:
    """Write ``target`` from ``source``, ``height`` pixels high (the width at most 3x that); its width."""
    try:
        with Image.open(source) as image:
            image = image.convert("RGB")
            width = max(1, min(3 * height, round(image.width * height / max(image.height, 1))))
            image.resize((width, height), Image.BILINEAR).save(target, format="JPEG", quality=_JPEG_QUALITY)
            return width
    except (OSError, ValueError) as error:
        raise DatasetError(f"{source}: cannot be read as an image for its thumbnail ({error})") from None


def write_thumbnails(out: str | Path, paths: Sequence[str], *, height: int = 128) -> list[Thumbnail]:
    """Thumbnails of ``paths`` (``height`` pixels high) into ``out/thumbs``, replacing what was there.

    Returns:
        Each image's thumbnail (path relative to ``out``: ``thumbs/000000.jpg``, ...), in the order of ``paths``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{THUMBS}.", dir=out))
    names = [f"{index:06d}.jpg" for index in range(len(paths))]
    try:
        widths = [
            _thumbnail(source, staging / name, height) for source, name in zip(paths, names, strict=True)
        ]
        final, retired = out / THUMBS, None
        if final.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{THUMBS}.old.", dir=out))
            os.replace(final, retired / THUMBS)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
    return [Thumbnail(f"{THUMBS}/{name}", width, height) for name, width in zip(names, widths, strict=True)]


def _link(source: str, out: Path) -> str:
    try:
        relative = os.path.relpath(Path(source).resolve(), out.resolve())
    except ValueError:  # another drive (Windows): no relative path exists
        return Path(source).resolve().as_uri()
    return quote(Path(relative).as_posix())


def _figure(source: str, thumb: Thumbnail, out: Path, caption: str, other: bool) -> str:
    name = html.escape(Path(source).name)
    return (
        f'<figure{" class=other" if other else ""}><a href="{html.escape(_link(source, out))}">'
        f'<img src="{html.escape(thumb.path)}" width={thumb.width} height={thumb.height} alt="{name}" '
        f'title="{html.escape(source)}" loading=lazy></a>'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _row(label: int, members: np.ndarray, paths, thumbs, out: Path, person_ids) -> str:
    count = f"{len(members)} image{'s' if len(members) != 1 else ''}"
    title = "Unclustered" if label < 0 else f"Cluster {label}"
    majority = None
    if person_ids is not None and label >= 0:
        known = [int(person_ids[i]) for i in members if person_ids[i] >= 0]
        if known:
            majority, hits = Counter(known).most_common(1)[0]
            count += f" · person {majority}: {hits} of {len(members)}"
    figures = []
    for i in members:
        pid = None if person_ids is None else int(person_ids[i])
        caption = Path(paths[i]).stem if pid is None else ("unknown" if pid < 0 else f"person {pid}")
        other = majority is not None and pid is not None and pid >= 0 and pid != majority
        figures.append(_figure(paths[i], thumbs[i], out, caption, other))
    return (
        f'<section class="cluster{" noise" if label < 0 else ""}" data-cluster="{label}" '
        f'data-size="{len(members)}"><h2>{title}<span>{html.escape(count)}</span></h2>'
        f"<div class=thumbs>{''.join(figures)}</div></section>"
    )


def write_page(
    out: str | Path,
    paths: Sequence[str],
    thumbs: Sequence[Thumbnail],
    labels: np.ndarray,
    *,
    person_ids: np.ndarray | None = None,
    heading: str = "Album",
    details: Sequence[str] = (),
) -> Path:
    """Write ``out/index.html`` (atomically) over thumbnails already written by :func:`write_thumbnails`.

    Args:
        out: output folder.
        paths: ``[N]`` image files.
        thumbs: ``[N]`` their thumbnails.
        labels: ``[N]`` cluster ids (0.. largest first, ``-1`` = unclustered).
        person_ids: ``[N]`` known person ids (``-1`` unknown) to caption and check the rows with, or None.
        heading: the page's title line.
        details: lines under it (method, parameters, scores).

    Returns:
        The page's path.
    """
    out = Path(out)
    labels = np.asarray(labels)
    if not len(labels) == len(paths) == len(thumbs):
        raise ValueError(f"{len(paths)} paths, {len(thumbs)} thumbnails and {len(labels)} labels")
    order = sorted(np.unique(labels).tolist(), key=lambda c: (c < 0, c))  # clusters in order, noise last
    rows = [_row(c, np.flatnonzero(labels == c), paths, thumbs, out, person_ids) for c in order]
    lines = "".join(f"<p>{html.escape(line)}</p>" for line in details)
    page = (
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{html.escape(heading)}</title>"
        f"<style>{_STYLE}</style><header><h1>{html.escape(heading)}</h1>{lines}</header>"
        f"<main>{''.join(rows)}</main></html>\n"
    )
    target = out / PAGE
    atomic_write_text(target, page)
    return target


def write_contact_sheet(
    out: str | Path,
    paths: Sequence[str],
    labels: np.ndarray,
    *,
    person_ids: np.ndarray | None = None,
    heading: str = "Album",
    details: Sequence[str] = (),
    thumb_height: int = 128,
) -> Path:
    """Write ``out/thumbs/`` and then ``out/index.html`` for a clustered album (see :func:`write_page`)."""
    thumbs = write_thumbnails(out, paths, height=thumb_height)
    return write_page(out, paths, thumbs, labels, person_ids=person_ids, heading=heading, details=details)
