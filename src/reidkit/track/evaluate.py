"""Scoring tracker results against MOTChallenge ground truth with TrackEval (the official MOTChallenge code).

Layout (as MOTChallenge ships it; ``gt_root`` may also be one sequence folder)::

    gt_root/<seq>/gt/gt.txt     ground truth (see :mod:`reidkit.track.motfiles` for the releases)
    gt_root/<seq>/seqinfo.ini   seqLength: the number of frames
    results_dir/<seq>.txt       tracker result (``frame,id,x,y,w,h,conf,-1,-1,-1``), e.g. a ``reidkit track`` run

Per sequence: HOTA, DetA, AssA (TrackEval's HOTA, averaged over its 19 localisation thresholds), MOTA, MOTP, IDSW,
FP, FN (CLEAR), IDF1, IDP, IDR (Identity), and the numbers of ground-truth and predicted ids, after TrackEval's
MotChallenge2DBox preprocessing: rows with flag 0 and of classes other than pedestrian are not ground truth, and
a predicted box that matches (IoU >= 0.5) a person on a vehicle, a static person, a distractor or a reflection
(MOT20 adds non-MOT vehicles) is removed rather than counted as a false positive. MOT15 ground truth has no class,
so only its flag-0 rows are dropped (TrackEval's MOT15 setting). ``COMBINED`` sums the counts over the sequences
as TrackEval does (its ``gt_ids`` / ``pred_ids`` are sums of the per-sequence counts).

**Multi-camera** (two or more sequences): the sequences put end to end as one sequence, each camera's frames
shifted past the previous cameras', so a ground-truth identity is one id across cameras and a predicted id too;
its IDF1 is the usual multi-camera IDF1 (one ground-truth/prediction id assignment for all cameras), so a person
that keeps one global id in every camera scores higher than one whose id changes between cameras. It only means
something when the ground-truth ids are global (the same person has the same id in every camera), as in reidkit's
synthetic video; MOTChallenge's own sequences number their ids per sequence.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from reidkit.errors import DatasetError, ReidkitError
from reidkit.track.motfiles import RELEASES, GroundTruth, read_gt, read_results, release_from_name
from reidkit.track.video import _positive_int, _read_seqinfo

__all__ = ["SequenceScores", "TrackEvalReport", "evaluate_run", "find_sequences"]

#: TrackEval's BENCHMARK setting per release (MOT16 and MOT17 preprocess alike)
_BENCHMARKS = {"mot15": "MOT15", "mot16": "MOT16", "mot17": "MOT17", "mot20": "MOT20"}
_NON_MOT_VEHICLE, _DISTRACTOR = 6, 8
_TRACKER = "run"

#: table columns: header -> (attribute of SequenceScores, a percentage?)
COLUMNS = {
    "HOTA": ("hota", True),
    "DetA": ("det_a", True),
    "AssA": ("ass_a", True),
    "MOTA": ("mota", True),
    "MOTP": ("motp", True),
    "IDF1": ("idf1", True),
    "IDP": ("idp", True),
    "IDR": ("idr", True),
    "IDSW": ("idsw", False),
    "FP": ("fp", False),
    "FN": ("fn", False),
    "GT ids": ("gt_ids", False),
    "Pred ids": ("pred_ids", False),
}


@dataclass(frozen=True)
class SequenceScores:
    """The scores of one sequence (or of the combined / multi-camera rows); rates are fractions in [0, 1].

    Attributes:
        name: sequence name, ``COMBINED`` or ``MULTI-CAMERA``.
        release: ``mot15``, ``mot16``, ``mot17``, ``mot20`` (or a ``+``-joined list for the summary rows).
        frames: frames scored (seqLength; summed for the summary rows).
        hota, det_a, ass_a: HOTA and its detection / association accuracy (mean over TrackEval's alphas).
        mota, motp: CLEAR MOTA and MOTP (mean IoU of the matches).
        idf1, idp, idr: identity F1, precision and recall.
        idsw, fp, fn, tp: CLEAR identity switches, false positives, false negatives, true positives.
        idtp, idfp, idfn: identity true positives, false positives and false negatives.
        gt_ids, pred_ids: ground-truth and predicted ids after preprocessing.
        gt_dets, pred_dets: ground-truth and predicted boxes after preprocessing.
        scored_as_empty: the result file was missing and the sequence was scored as tracked by nothing.
    """

    name: str
    release: str
    frames: int
    hota: float
    det_a: float
    ass_a: float
    mota: float
    motp: float
    idf1: float
    idp: float
    idr: float
    idsw: int
    fp: int
    fn: int
    tp: int
    idtp: int
    idfp: int
    idfn: int
    gt_ids: int
    pred_ids: int
    gt_dets: int
    pred_dets: int
    scored_as_empty: bool = False


@dataclass(frozen=True)
class TrackEvalReport:
    """Scores of a tracking run: per sequence, combined, and multi-camera (None with fewer than 2 sequences)."""

    sequences: list[SequenceScores]
    combined: SequenceScores
    multi_camera: SequenceScores | None
    threshold: float
    gt_root: str
    results_dir: str
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[SequenceScores]:
        """The per-sequence rows, then COMBINED, then MULTI-CAMERA when there is one."""
        return [*self.sequences, self.combined, *([self.multi_camera] if self.multi_camera else [])]

    def table(self) -> str:
        """Aligned text table: rates in percent with 2 decimals, counts as integers."""
        header = ["Sequence", "Release", *COLUMNS]
        lines = []
        for row in self.rows():
            cells = [row.name + (" (empty)" if row.scored_as_empty else ""), row.release]
            for attribute, percent in COLUMNS.values():
                value = getattr(row, attribute)
                cells.append(f"{100 * value:.2f}" if percent else str(int(value)))
            lines.append(cells)
        widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]

        def line(cells: list[str]) -> str:
            return "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )

        rule = "-" * len(line(header))
        body = [line(cells) for cells in lines]
        split = len(self.sequences)
        text = [line(header), rule, *body[:split], rule, *body[split:]]
        if self.multi_camera is not None:
            text.append(
                f"MULTI-CAMERA: the {len(self.sequences)} sequences scored as one with their ids taken as global "
                "(one person, one id across cameras)"
            )
        text.extend(self.notes)
        return "\n".join(text)

    def to_dict(self) -> dict:
        """Plain data: ``sequences``, ``combined``, ``multi_camera`` (rates as fractions), the settings, notes."""
        return {
            "gt_root": self.gt_root,
            "results_dir": self.results_dir,
            "threshold": self.threshold,
            "sequences": [asdict(row) for row in self.sequences],
            "combined": asdict(self.combined),
            "multi_camera": asdict(self.multi_camera) if self.multi_camera else None,
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2)


@dataclass(frozen=True)
class _Sequence:
    name: str
    gt: GroundTruth
    results: np.ndarray
    length: int
    empty: bool


def _trackeval():
    try:
        import trackeval
    except ImportError as error:
        raise ReidkitError("scoring tracks needs TrackEval: pip install trackeval==1.3.0") from error
    return trackeval


def find_sequences(gt_root: str | Path) -> dict[str, Path]:
    """The ground-truth sequences under ``gt_root``: name -> folder (holding ``gt/gt.txt``), sorted by name.

    ``gt_root`` is a folder of sequence folders, or one sequence folder itself.

    Raises:
        DatasetError: ``gt_root`` is not a folder or holds no ``<seq>/gt/gt.txt``.
    """
    root = Path(gt_root)
    if not root.is_dir():
        raise DatasetError(f"ground-truth folder {str(root)!r} does not exist")
    if (root / "gt" / "gt.txt").is_file():
        return {root.resolve().name: root}
    found = {p.name: p for p in sorted(root.iterdir()) if (p / "gt" / "gt.txt").is_file()}
    if not found:
        raise DatasetError(
            f"ground-truth folder {str(root)!r} holds no MOTChallenge sequence (expected <seq>/gt/gt.txt and "
            "<seq>/seqinfo.ini)"
        )
    return found


def _result_path(results_dir: Path, name: str, info_name: str) -> Path:
    path = results_dir / f"{name}.txt"
    if not path.is_file() and info_name and (results_dir / f"{info_name}.txt").is_file():
        return results_dir / f"{info_name}.txt"
    return path


def _load_sequence(
    name: str, folder: Path, results_dir: Path, release: str | None, missing_as_empty: bool
) -> tuple[_Sequence, Path]:
    seqinfo = folder / "seqinfo.ini"
    section = _read_seqinfo(seqinfo)
    length = _positive_int(section, "seqLength", seqinfo)
    info_name = section["name"].strip()
    named = name if release_from_name(name) or not release_from_name(info_name) else info_name
    gt = read_gt(folder / "gt" / "gt.txt", release, name=named)
    if gt.last_frame > length:
        raise DatasetError(
            f"{str(seqinfo)!r} says seqLength={length} but {str(gt.path)!r} has boxes up to frame "
            f"{gt.last_frame}: the seqinfo.ini does not match the ground truth"
        )
    path = _result_path(results_dir, name, info_name)
    if not path.is_file():
        if not missing_as_empty:
            raise DatasetError(
                f"no tracker result {str(path)!r} for the ground-truth sequence {name!r} "
                "(score it as tracked by nothing with --missing-as-empty, or leave it out with --sequences)"
            )
        return _Sequence(name, gt, np.zeros((0, 7)), length, empty=True), path
    results = read_results(path)
    last = int(results[:, 0].max()) if len(results) else 0
    if last > length:
        raise DatasetError(
            f"{str(path)!r} has boxes up to frame {last} but {str(seqinfo)!r} says seqLength={length}"
        )
    return _Sequence(name, gt, results, length, empty=False), path


def _number(value: float) -> str:
    return f"{value:.17g}"


def _write_pair(root: Path, key: str, gt_rows: np.ndarray, results: np.ndarray) -> None:
    """``gt_rows [N, 9]`` and ``results [M, 7]`` as TrackEval reads them: ``root/gt/<key>/gt/gt.txt`` and
    ``root/trackers/run/<key>.txt`` (the result's columns 8-10 -1, which TrackEval takes as class 'none')."""
    gt_file = root / "gt" / key / "gt" / "gt.txt"
    gt_file.parent.mkdir(parents=True)
    gt_file.write_text("".join(",".join(map(_number, row)) + "\n" for row in gt_rows))
    tracker_file = root / "trackers" / _TRACKER / f"{key}.txt"
    tracker_file.parent.mkdir(parents=True, exist_ok=True)
    tracker_file.write_text("".join(",".join(map(_number, row)) + ",-1,-1,-1\n" for row in results))


def _score(
    root: Path, benchmark: str, lengths: dict[str, int], threshold: float
) -> dict[str, tuple[dict, dict]]:
    """TrackEval's preprocessing and metrics for the sequences ``lengths`` (key -> frames) written by
    :func:`_write_pair`: key -> (metric name -> TrackEval result, preprocessed counts)."""
    trackeval = _trackeval()
    dataset = trackeval.datasets.MotChallenge2DBox(
        {
            "GT_FOLDER": str(root / "gt"),
            "TRACKERS_FOLDER": str(root / "trackers"),
            "OUTPUT_FOLDER": str(root / "out"),
            "TRACKERS_TO_EVAL": [_TRACKER],
            "BENCHMARK": benchmark,
            "SEQ_INFO": dict(lengths),
            "SKIP_SPLIT_FOL": True,
            "TRACKER_SUB_FOLDER": "",
            "DO_PREPROC": True,
            "PRINT_CONFIG": False,
        }
    )
    metrics = [
        trackeval.metrics.HOTA(),
        trackeval.metrics.CLEAR({"THRESHOLD": threshold, "PRINT_CONFIG": False}),
        trackeval.metrics.Identity({"THRESHOLD": threshold, "PRINT_CONFIG": False}),
    ]
    scored = {}
    for key in lengths:
        raw = dataset.get_raw_seq_data(_TRACKER, key)
        data = dataset.get_preprocessed_seq_data(raw, "pedestrian")
        counts = {
            k: int(data[k]) for k in ("num_gt_ids", "num_tracker_ids", "num_gt_dets", "num_tracker_dets")
        }
        scored[key] = ({metric.get_name(): metric.eval_sequence(data) for metric in metrics}, counts)
    return scored


def _combine(results: list[dict]) -> dict:
    trackeval = _trackeval()
    metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR({"PRINT_CONFIG": False}),
               trackeval.metrics.Identity({"PRINT_CONFIG": False})]  # fmt: skip
    return {
        metric.get_name(): metric.combine_sequences(
            {str(i): r[metric.get_name()] for i, r in enumerate(results)}
        )
        for metric in metrics
    }


def _scores(
    name: str, release: str, frames: int, result: dict, counts: dict, empty: bool = False
) -> SequenceScores:
    hota, clear, identity = result["HOTA"], result["CLEAR"], result["Identity"]
    return SequenceScores(
        name=name,
        release=release,
        frames=int(frames),
        hota=float(np.mean(hota["HOTA"])),
        det_a=float(np.mean(hota["DetA"])),
        ass_a=float(np.mean(hota["AssA"])),
        mota=float(clear["MOTA"]),
        motp=float(clear["MOTP"]),
        idf1=float(identity["IDF1"]),
        idp=float(identity["IDP"]),
        idr=float(identity["IDR"]),
        idsw=int(clear["IDSW"]),
        fp=int(clear["CLR_FP"]),
        fn=int(clear["CLR_FN"]),
        tp=int(clear["CLR_TP"]),
        idtp=int(identity["IDTP"]),
        idfp=int(identity["IDFP"]),
        idfn=int(identity["IDFN"]),
        gt_ids=counts["num_gt_ids"],
        pred_ids=counts["num_tracker_ids"],
        gt_dets=counts["num_gt_dets"],
        pred_dets=counts["num_tracker_dets"],
        scored_as_empty=empty,
    )


def _releases(sequences: list[_Sequence]) -> str:
    return "+".join(sorted({s.gt.release for s in sequences}))


def _multi_camera(root: Path, sequences: list[_Sequence], threshold: float) -> SequenceScores:
    """The sequences end to end as one (frames offset), ids global, scored by TrackEval."""
    releases = {s.gt.release for s in sequences}
    benchmark = _BENCHMARKS[releases.pop()] if len(releases) == 1 else "MOT17"
    gt_parts, result_parts, offset = [], [], 0
    for sequence in sequences:
        gt = sequence.gt.rows.copy()
        if sequence.gt.release == "mot20" and benchmark != "MOT20":
            # MOT20 alone counts non-MOT vehicles as distractors: keep that under the MOT17 setting
            gt[gt[:, 7] == _NON_MOT_VEHICLE, 7] = _DISTRACTOR
        gt[:, 0] += offset
        results = sequence.results.copy()
        results[:, 0] += offset
        gt_parts.append(gt)
        result_parts.append(results)
        offset += sequence.length
    _write_pair(root, "all", np.concatenate(gt_parts), np.concatenate(result_parts))
    result, counts = _score(root, benchmark, {"all": offset}, threshold)["all"]
    return _scores("MULTI-CAMERA", _releases(sequences), offset, result, counts)


def _select(available: dict[str, Path], sequences: list[str] | None, gt_root: Path) -> list[str]:
    if sequences is None:
        return list(available)
    names = [s.strip() for s in sequences if s.strip()]
    if not names:
        raise DatasetError("the list of sequences to score is empty")
    unknown = [s for s in names if s not in available]
    if unknown:
        raise DatasetError(
            f"no ground truth for sequence(s) {', '.join(unknown)} under {str(gt_root)!r} (expected "
            f"<seq>/gt/gt.txt); it has {', '.join(available)}"
        )
    return list(dict.fromkeys(names))


def evaluate_run(
    gt_root: str | Path,
    results_dir: str | Path,
    *,
    sequences: list[str] | None = None,
    release: str | None = None,
    threshold: float = 0.5,
    missing_as_empty: bool = False,
) -> TrackEvalReport:
    """Score the tracker results in ``results_dir`` against the MOTChallenge ground truth under ``gt_root``.

    Args:
        gt_root: folder of sequence folders ``<seq>/gt/gt.txt`` + ``<seq>/seqinfo.ini`` (or one such folder).
        results_dir: folder of ``<seq>.txt`` result files (a ``reidkit track`` run folder); ``<name>.txt`` with
            the seqinfo.ini ``name`` is taken when ``<seq>.txt`` is missing.
        sequences: the sequences to score; default every ground-truth sequence, and then every ``*.txt`` in
            ``results_dir`` must have one.
        release: ``mot15`` / ``mot16`` / ``mot17`` / ``mot20`` for every file, or None / ``auto`` to decide
            per file (:func:`reidkit.track.motfiles.read_gt`).
        threshold: IoU for a match in CLEAR (MOTA) and Identity (IDF1); HOTA averages over its own thresholds.
        missing_as_empty: score a sequence without a result file as tracked by nothing instead of failing.

    Returns:
        The :class:`TrackEvalReport`.

    Raises:
        DatasetError: a folder or file is missing or malformed, a result file has no ground-truth sequence, a
            seqinfo.ini's seqLength is below the frames of its ground truth or result, or a bad release name.
        ReidkitError: TrackEval is not installed.
    """
    if not 0.0 < float(threshold) <= 1.0:
        raise DatasetError(f"the IoU threshold must be in (0, 1], got {threshold}")
    if release is not None and release != "auto" and release not in RELEASES:
        raise DatasetError(
            f"unknown MOTChallenge release {release!r}; choose from auto, {', '.join(RELEASES)}"
        )
    gt_root, results_dir = Path(gt_root), Path(results_dir)
    if not results_dir.is_dir():
        raise DatasetError(f"tracker results folder {str(results_dir)!r} does not exist")
    available = find_sequences(gt_root)
    names = _select(available, sequences, gt_root)
    loaded, used = [], set()
    for name in names:
        sequence, path = _load_sequence(name, available[name], results_dir, release, missing_as_empty)
        loaded.append(sequence)
        used.add(path.name)
    if sequences is None:
        orphans = sorted(p.name for p in results_dir.glob("*.txt") if p.name not in used)
        if orphans:
            raise DatasetError(
                f"result file(s) {', '.join(orphans)} in {str(results_dir)!r} have no ground-truth sequence under "
                f"{str(gt_root)!r} (expected <seq>/gt/gt.txt for each); pass --sequences to score a subset"
            )
    with tempfile.TemporaryDirectory(prefix="reidkit-trackeval-") as temp:
        root = Path(temp)
        keys = {f"s{i:04d}": s for i, s in enumerate(loaded)}
        for key, sequence in keys.items():
            _write_pair(root, key, sequence.gt.rows, sequence.results)
        per_sequence: dict[str, tuple[dict, dict]] = {}
        for release_name in sorted({s.gt.release for s in loaded}):
            group = {k: s.length for k, s in keys.items() if s.gt.release == release_name}
            per_sequence.update(_score(root, _BENCHMARKS[release_name], group, threshold))
        rows = [
            _scores(s.name, s.gt.release, s.length, *per_sequence[k], empty=s.empty) for k, s in keys.items()
        ]
        combined_counts = {
            c: sum(per_sequence[k][1][c] for k in keys) for c in per_sequence[next(iter(keys))][1]
        }
        combined = _scores(
            "COMBINED", _releases(loaded), sum(s.length for s in loaded),
            _combine([per_sequence[k][0] for k in keys]), combined_counts,
        )  # fmt: skip
        multi = _multi_camera(root, loaded, threshold) if len(loaded) > 1 else None
    notes = [f"{s.name}: no result file, scored as tracked by nothing" for s in loaded if s.empty]
    return TrackEvalReport(rows, combined, multi, float(threshold), str(gt_root), str(results_dir), notes)
