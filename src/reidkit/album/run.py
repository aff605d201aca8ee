"""Cluster a folder of photos by person and write the result: the library side of ``reidkit cluster``.

Output folder::

    OUT/clusters.csv    path,cluster[,person]   one row per image; cluster -1 = unclustered
    OUT/clusters.json   images folder, model, method and parameters, counts, scores (with known person ids)
    OUT/index.html      the contact sheet (:mod:`reidkit.album.sheet`), thumbnails in OUT/thumbs/

Everything that can fail on the input (listing, file names, embedding, clustering) runs before anything is
written; each file is then written atomically (temp file + rename), the page last. Re-running replaces the files.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reidkit._io import atomic_write_text
from reidkit.album.clustering import cluster, cluster_counts, method_parameters
from reidkit.album.scores import person_ids_from_names, score_clustering
from reidkit.album.sheet import write_page, write_thumbnails
from reidkit.embed import Embedder, embed_paths
from reidkit.errors import ConfigError, DatasetError

CSV_NAME = "clusters.csv"
JSON_NAME = "clusters.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class AlbumResult:
    """A clustered album.

    Attributes:
        paths: ``[N]`` image files, sorted.
        labels: ``[N]`` cluster ids (0.. largest first, ``-1`` = unclustered).
        person_ids: ``[N]`` ids read from the file names (``-1`` unknown), or None.
        summary: what ``clusters.json`` holds.
    """

    paths: list[str]
    labels: np.ndarray
    person_ids: np.ndarray | None
    summary: dict


def album_images(folder: str | Path, *, exclude: str | Path | None = None) -> list[str]:
    """The image files under ``folder`` (recursive, sorted), leaving out those under ``exclude``.

    Raises:
        DatasetError: ``folder`` is not a folder or holds no images.
    """
    from reidkit.data.folder import IMAGE_EXTENSIONS, list_images

    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"images folder {folder} is not a folder")
    skip = Path(exclude).resolve() if exclude is not None else None
    paths = [
        str(path)
        for path in list_images(folder, recursive=True)
        if skip is None or not path.resolve().is_relative_to(skip)
    ]
    if not paths:
        raise DatasetError(f"images folder {folder} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return paths


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output folder {out} exists and is not a folder")


def cluster_images(
    paths: Sequence[str],
    embedder: Embedder,
    out: str | Path,
    *,
    method: str = "hdbscan",
    parameters: Mapping[str, object] | None = None,
    labels_from_names: str | None = None,
    images_root: str | Path | None = None,
    batch_size: int = 64,
    workers: int = 0,
    progress: bool = False,
    thumb_height: int = 128,
) -> AlbumResult:
    """Embed ``paths``, cluster them by person and write ``out/clusters.csv``, ``clusters.json``, ``index.html``.

    Args:
        paths: image files.
        embedder: any :class:`reidkit.embed.Embedder`.
        out: output folder (created; the files in it are replaced).
        method: a key of :data:`reidkit.album.clustering.CLUSTERERS`.
        parameters: the method's parameters (defaults for those not given).
        labels_from_names: a scheme of :data:`reidkit.album.scores.NAME_SCHEMES` to read person ids from the
            file names and score the clustering with (pairwise precision / recall / F1, adjusted Rand index).
        images_root: the folder the images came from (recorded in ``clusters.json``).
        batch_size: images per embedder call.
        workers: image loader processes.
        progress: show a progress bar while embedding.
        thumb_height: contact-sheet thumbnail height in pixels (>= 16).

    Raises:
        ConfigError: a bad method, parameter or output folder.
        DatasetError: an unreadable image, or names that do not follow ``labels_from_names``.
    """
    out = Path(out)
    _check_out(out)
    if not paths:
        raise DatasetError("no images to cluster")
    if thumb_height < 16:
        raise ConfigError(f"thumb_height must be at least 16 pixels, got {thumb_height}")
    settings = {**method_parameters(method), **dict(parameters or {})}
    person_ids = person_ids_from_names(paths, labels_from_names) if labels_from_names else None
    started = time.perf_counter()
    embeddings = embed_paths(embedder, paths, batch_size=batch_size, workers=workers, progress=progress)
    embedded = time.perf_counter()
    labels = cluster(embeddings, method, **settings)
    summary = {
        "format_version": FORMAT_VERSION,
        "images_root": None if images_root is None else str(images_root),
        "model": {"name": embedder.name, "fingerprint": embedder.fingerprint, "dim": int(embedder.dim)},
        "method": method,
        "parameters": settings,
        "counts": cluster_counts(labels),
        "labels_from_names": labels_from_names,
        "scores": None if person_ids is None else score_clustering(person_ids, labels),
        "seconds": {
            "embed": round(embedded - started, 3),
            "cluster": round(time.perf_counter() - embedded, 3),
        },
    }
    result = AlbumResult(list(paths), labels, person_ids, summary)
    write_album(out, result, thumb_height=thumb_height)
    return result


def cluster_album(folder: str | Path, embedder: Embedder, out: str | Path, **options) -> AlbumResult:
    """:func:`cluster_images` on every image under ``folder`` (recursive) except those under ``out``."""
    _check_out(Path(out))
    return cluster_images(album_images(folder, exclude=out), embedder, out, images_root=folder, **options)


def _csv_text(result: AlbumResult) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "cluster"] + (["person"] if result.person_ids is not None else []))
    for index, (path, label) in enumerate(zip(result.paths, result.labels, strict=True)):
        extra = [int(result.person_ids[index])] if result.person_ids is not None else []
        writer.writerow([path, int(label), *extra])
    return buffer.getvalue()


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def describe(summary: Mapping) -> list[str]:
    """Human-readable lines of a summary: method and parameters, counts, scores."""
    parameters = ", ".join(f"{k}={v}" for k, v in summary["parameters"].items())
    counts = summary["counts"]
    lines = [
        f"{_count(counts['images'], 'image')}, {_count(counts['clusters'], 'cluster')}, "
        f"{counts['unclustered']} unclustered",
        f"method {summary['method']} ({parameters}); model {summary['model']['name']}",
    ]
    scores = summary.get("scores")
    if scores:
        lines.append(
            f"pairwise precision {scores['precision']:.4f}, recall {scores['recall']:.4f}, "
            f"F1 {scores['f1']:.4f}; adjusted Rand index {scores['ari']:.4f} "
            f"(over {scores['items_scored']} images of {scores['identities']} people"
            + (
                f"; {scores['items_unknown']} of unknown identity left out)"
                if scores["items_unknown"]
                else ")"
            )
        )
    return lines


def write_album(out: str | Path, result: AlbumResult, *, thumb_height: int = 128) -> None:
    """Write the thumbnails, ``clusters.csv``, ``clusters.json`` and, last, ``index.html`` of ``result``."""
    out = Path(out)
    counts = result.summary["counts"]
    thumbs = write_thumbnails(out, result.paths, height=thumb_height)
    atomic_write_text(out / CSV_NAME, _csv_text(result))
    atomic_write_text(out / JSON_NAME, json.dumps(result.summary, indent=2) + "\n")
    write_page(  # last: it is what a reader opens
        out,
        result.paths,
        thumbs,
        result.labels,
        person_ids=result.person_ids,
        heading=f"Album: {_count(counts['images'], 'image')} in {_count(counts['clusters'], 'cluster')}",
        details=describe(result.summary),
    )
