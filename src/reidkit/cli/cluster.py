"""``reidkit cluster``: group a folder of photos by person (HDBSCAN, DBSCAN, agglomerative or linked over ReID embeddings)."""

from __future__ import annotations

import argparse

from reidkit.cli._common import (
    add_embedder_arguments,
    embedder_from_args,
    image_folder,
    positive,
    positive_float,
)
from reidkit.errors import ReidkitError

#: command-line flag -> parameter of the clustering functions (offered to the methods that take it)
_FLAGS = {
    "metric": "--metric",
    "eps": "--eps",
    "min_cluster_size": "--min-cluster-size",
    "min_samples": "--min-samples",
    "threshold": "--threshold",
    "linkage": "--linkage",
}


def _at_least_two(value: str) -> int:
    number = int(value)
    if number < 2:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2, got {value}")
    return number


def add_cluster(commands) -> None:
    from reidkit.album.clustering import CLUSTERERS, LINKAGES, METRICS
    from reidkit.album.scores import NAME_SCHEMES

    p = commands.add_parser(
        "cluster",
        help="group a folder of photos by person: clusters.csv, clusters.json and an HTML contact sheet",
        description="Embed every image under --images (recursive), cluster the embeddings and write "
        "OUT/clusters.csv (path,cluster; -1 = unclustered), OUT/clusters.json and OUT/index.html.",
    )
    p.add_argument("--images", required=True, help="folder of photos (searched recursively)")
    p.add_argument(
        "--out", required=True, help="output folder (its clusters.* / index.html / thumbs are replaced)"
    )
    add_embedder_arguments(p)
    group = p.add_argument_group("clustering")
    group.add_argument(
        "--method", choices=sorted(CLUSTERERS), default="hdbscan", help="clustering method (default hdbscan)"
    )
    group.add_argument(
        "--metric", choices=METRICS, help="hdbscan/dbscan: distance on unit embeddings (default cosine)"
    )
    group.add_argument("--eps", type=positive_float, help="dbscan: neighbourhood radius (default 0.3)")
    group.add_argument(
        "--min-cluster-size", type=_at_least_two, help="hdbscan: fewest images in a cluster (default 2)"
    )
    group.add_argument("--min-samples", type=positive, help="hdbscan/dbscan: neighbours of a core point")
    group.add_argument(
        "--threshold",
        type=positive_float,
        help="agglomerative, linked: cosine distance where merging stops (default 0.5)",
    )
    group.add_argument(
        "--linkage", choices=LINKAGES, help="agglomerative, linked: cluster distance (default average)"
    )
    p.add_argument(
        "--labels-from-names",
        choices=sorted(NAME_SCHEMES),
        help="read person ids from the file names and score the clustering (pairwise P/R/F1, ARI)",
    )
    p.add_argument("--thumb-height", type=positive, default=128, help="thumbnail height in pixels")
    p.add_argument("--batch-size", type=positive, default=64)
    p.add_argument("--workers", type=int, default=0, help="image loader processes")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_cluster)


def _parameters(args: argparse.Namespace) -> dict:
    """The clustering parameters given on the command line; a flag the method does not take is an error."""
    from reidkit.album.clustering import method_parameters

    taken = method_parameters(args.method)
    given = {name: getattr(args, name) for name in _FLAGS if getattr(args, name) is not None}
    wrong = [_FLAGS[name] for name in given if name not in taken]
    if wrong:
        offered = ", ".join(_FLAGS[name] for name in taken if name in _FLAGS)
        raise ReidkitError(f"--method {args.method} does not take {', '.join(wrong)} (it takes: {offered})")
    return given


def run_cluster(args: argparse.Namespace) -> int:
    from pathlib import Path

    from reidkit.album.run import album_images, cluster_images, describe

    parameters = _parameters(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ReidkitError(f"--out {out} exists and is not a folder")
    image_folder("--images", args.images)  # names the option when the folder is missing or empty
    paths = album_images(args.images, exclude=out)
    result = cluster_images(
        paths,
        embedder_from_args(args),
        out,
        method=args.method,
        parameters=parameters,
        labels_from_names=args.labels_from_names,
        images_root=args.images,
        batch_size=args.batch_size,
        workers=args.workers,
        progress=not args.quiet,
        thumb_height=args.thumb_height,
    )
    for line in describe(result.summary):
        print(line)
    print(f"wrote {out / 'clusters.csv'}, {out / 'clusters.json'} and the contact sheet {out / 'index.html'}")
    return 0
