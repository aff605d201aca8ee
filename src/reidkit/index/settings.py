"""The settings of one index: a frozen record, its checks, and its rows in the SQLite ``settings`` table.

The table holds one JSON-encoded value per key: ``format_version`` (always :data:`FORMAT_VERSION` for the indexes
this reidkit writes) and every field of :class:`IndexSettings`. A change is a new record
(:meth:`IndexSettings.update`), written in the caller's transaction.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from reidkit.index.items import GalleryIndexError, is_integer

FORMAT_VERSION = 1
METRICS = ("ip", "l2")
KINDS = ("flat", "ivf", "ivfpq")
#: largest number of bits per product-quantiser code (2**bits centroids are trained per sub-quantiser).
MAX_PQ_BITS = 16
#: automatic nprobe: lists visited per query as a fraction of the trained lists (and its floor); on clustered
#: 256-d embeddings this found 0.964 of the exact top-10 at 1M items (benchmarks/search.py, README)
AUTO_NPROBE_FRACTION = 1 / 64
AUTO_NPROBE_MINIMUM = 16
#: keys an index written before they existed may lack, with the value that index behaves as.
_DEFAULTS = {"refine": 1}
#: the settings an index is created with that decide what it holds and how it searches (see ``differences``).
_CREATION_FIELDS = ("fingerprint", "dim", "metric", "kind", "nlist", "pq_m", "pq_bits", "nprobe", "refine")


@dataclass(frozen=True)
class IndexSettings:
    """What an index was built with and which version of it is committed.

    Attributes:
        dim: embedding dimension D.
        fingerprint: the embedder's fingerprint; adds and searches must present the same string.
        model_name: the embedder's name, for :meth:`reidkit.index.Index.info`.
        metric: ``"ip"`` (inner product on L2-normalised embeddings) or ``"l2"``.
        kind: ``"flat"``, ``"ivf"`` or ``"ivfpq"``.
        nlist: IVF lists asked for (None: about 4 sqrt(N) at training time).
        pq_m: PQ sub-quantisers (set for ``"ivfpq"``; must divide ``dim``).
        pq_bits: bits per PQ code.
        nprobe: lists visited per query for IVF kinds; None: automatic (:func:`auto_nprobe` of the trained
            lists, see :attr:`search_nprobe`).
        refine: for ``"ivfpq"``, candidates fetched per hit and re-ranked exactly (1: no re-ranking).
        trained_nlist: lists of the trained IVF structure; None while the structure is flat (exact).
        version: the committed version, bumped by every write.
    """

    dim: int
    fingerprint: str
    model_name: str = ""
    metric: str = "ip"
    kind: str = "flat"
    nlist: int | None = None
    pq_m: int | None = None
    pq_bits: int = 8
    nprobe: int | None = None
    refine: int = 1
    trained_nlist: int | None = None
    version: int = 0

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise GalleryIndexError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if self.kind not in KINDS:
            raise GalleryIndexError(f"kind must be one of {KINDS}, got {self.kind!r}")
        self._integer("dim", minimum=1)
        if not isinstance(self.fingerprint, str) or not self.fingerprint:
            raise GalleryIndexError("fingerprint must be a non-empty string (the embedder's fingerprint)")
        if not isinstance(self.model_name, str):
            raise GalleryIndexError(f"model_name must be a string, got {self.model_name!r}")
        self._integer("pq_m", minimum=1, optional=self.kind != "ivfpq")
        if self.kind == "ivfpq" and self.dim % self.pq_m:
            raise GalleryIndexError(f"pq_m={self.pq_m} must divide dim={self.dim}")
        self._integer("refine", minimum=1, text="an integer >= 1")
        self._integer("nlist", minimum=1, optional=True)
        self._integer("pq_bits", minimum=1, maximum=MAX_PQ_BITS)
        self._integer("nprobe", minimum=1, optional=True)
        self._integer("trained_nlist", minimum=1, optional=True)
        self._integer("version", minimum=0, text="a non-negative integer")

    def _integer(
        self,
        name: str,
        *,
        minimum: int,
        maximum: int | None = None,
        optional: bool = False,
        text: str = "a positive integer",
    ) -> None:
        """Check the integer field ``name`` and store it as a plain ``int`` (NumPy integers are accepted)."""
        value = getattr(self, name)
        if value is None and optional:
            return
        if maximum is not None:
            text = f"an integer from {minimum} to {maximum}"
        if not is_integer(value) or value < minimum or (maximum is not None and value > maximum):
            raise GalleryIndexError(f"{name} must be {text}, got {value!r}")
        object.__setattr__(self, name, int(value))

    # ------------------------------------------------------------------ derived values
    @property
    def structure(self) -> str:
        """The FAISS structure in use: ``kind`` once trained, ``"flat"`` (exact) until then."""
        return self.kind if self.trained_nlist is not None else "flat"

    @property
    def search_nprobe(self) -> int:
        """Lists visited per query: ``nprobe`` when set, else :func:`auto_nprobe` of the trained lists."""
        if self.nprobe is not None:
            return self.nprobe
        return auto_nprobe(self.trained_nlist or 1)

    @property
    def refine_factor(self) -> int:
        """Candidates fetched per wanted hit: ``refine`` for a trained IVF-PQ structure, else 1."""
        return self.refine if self.structure == "ivfpq" else 1

    def differences(self, asked: IndexSettings) -> list[str]:
        """What differs between these settings and ``asked`` in what an index is created with.

        Compares every argument of :meth:`create` but ``model_name`` (a label: the fingerprint identifies the
        model); the state of the index (``trained_nlist``, ``version``) is not compared.

        Returns:
            One line per difference, e.g. ``"metric: 'ip' in the index, 'l2' asked"``; empty when none.
        """
        return [
            f"{name}: {getattr(self, name)!r} in the index, {getattr(asked, name)!r} asked"
            for name in _CREATION_FIELDS
            if getattr(self, name) != getattr(asked, name)
        ]

    # ------------------------------------------------------------------ building
    @classmethod
    def create(
        cls,
        *,
        dim: int,
        fingerprint: str,
        model_name: str = "",
        metric: str = "ip",
        kind: str = "flat",
        nlist: int | None = None,
        pq_m: int | None = None,
        pq_bits: int = 8,
        nprobe: int | None = None,
        refine: int = 4,
    ) -> IndexSettings:
        """Settings of a new, empty index (version 0, untrained).

        Args:
            dim: embedding dimension D.
            fingerprint: the embedder's fingerprint; adds and searches must present the same string.
            model_name: shown by :meth:`info`.
            metric: ``"ip"`` (inner product on L2-normalised embeddings, exact cosine) or ``"l2"``.
            kind: ``"flat"`` (exact), ``"ivf"`` (inverted lists, exact vectors) or ``"ivfpq"`` (inverted
                lists + product quantisation, for millions of images). IVF kinds are trained on the stored
                embeddings once there are enough of them (39 per list); until then search is exact.
            nlist: number of IVF lists (default: about 4 sqrt(N) at training time).
            pq_m: number of PQ sub-quantisers (must divide ``dim``; default ``dim // 8``).
            pq_bits: bits per PQ code.
            nprobe: lists visited per query for IVF kinds; None (default): chosen when the index is trained,
                ``max(16, nlist / 64)`` lists (at most all), e.g. 63 of 4000 lists at 1M items.
            refine: for ``"ivfpq"``, fetch ``refine * top_k`` candidates from the compressed codes and re-rank
                them with the exact stored embeddings (1: no re-ranking); the distances returned are exact.

        Raises:
            GalleryIndexError: a bad value; the message names the argument and what was expected.
        """
        if kind == "ivfpq" and not pq_m and is_integer(dim) and dim >= 1:
            pq_m = max(1, dim // 8)
        return cls(
            dim=dim,
            fingerprint=fingerprint,
            model_name=model_name,
            metric=metric,
            kind=kind,
            nlist=nlist,
            pq_m=pq_m,
            pq_bits=pq_bits,
            nprobe=nprobe,
            refine=refine,
        )

    @classmethod
    def from_values(cls, values: dict[str, Any], *, where: str) -> IndexSettings:
        """Settings from the decoded rows of a settings table.

        Args:
            values: key -> decoded JSON value, ``format_version`` included.
            where: the index (directory or database) for messages.

        Raises:
            GalleryIndexError: another format version, a missing key or a bad value.
        """
        _check_format(values, where)
        names = [spec.name for spec in fields(cls)]
        values = {**_DEFAULTS, **values}
        missing = [name for name in names if name not in values]
        if missing:
            raise GalleryIndexError(f"{where}: the settings table lacks {missing}")
        try:
            return cls(**{name: values[name] for name in names})
        except GalleryIndexError as error:
            raise GalleryIndexError(f"{where}: bad settings: {error}") from None

    # ------------------------------------------------------------------ the SQLite table
    @classmethod
    def read(cls, connection: sqlite3.Connection, *, directory: Path, database: Path) -> IndexSettings:
        """The settings stored in ``connection``'s settings table (read inside the caller's transaction).

        Args:
            connection: the index database.
            directory: the index directory, for the format-version message.
            database: the database file, for the other messages.
        """
        try:
            rows = connection.execute("SELECT key, value FROM settings").fetchall()
        except sqlite3.DatabaseError as error:
            raise GalleryIndexError(f"{database} is not a valid index database: {error}") from None
        try:
            values = {key: json.loads(value) for key, value in rows}
        except (TypeError, ValueError) as error:
            raise GalleryIndexError(f"{database}: a settings value is not valid JSON ({error})") from None
        _check_format(values, str(directory))
        return cls.from_values(values, where=str(database))

    def insert(self, connection: sqlite3.Connection) -> None:
        """Write every row of a new settings table (``format_version`` first)."""
        rows = {"format_version": FORMAT_VERSION, **asdict(self)}
        connection.executemany(
            "INSERT INTO settings VALUES (?, ?)", [(key, json.dumps(value)) for key, value in rows.items()]
        )

    def update(self, connection: sqlite3.Connection, **changes: Any) -> IndexSettings:
        """The settings with ``changes`` applied, written to the table in the caller's transaction."""
        updated = replace(self, **changes)
        connection.executemany(
            "UPDATE settings SET value = ? WHERE key = ?",
            [(json.dumps(getattr(updated, key)), key) for key in changes],
        )
        return updated


def auto_nprobe(nlist: int) -> int:
    """The automatic nprobe for ``nlist`` trained lists: ``ceil(nlist / 64)``, at least 16, at most ``nlist``."""
    return min(nlist, max(AUTO_NPROBE_MINIMUM, math.ceil(nlist * AUTO_NPROBE_FRACTION)))


def _check_format(values: dict[str, Any], where: str) -> None:
    if values.get("format_version") != FORMAT_VERSION:
        raise GalleryIndexError(
            f"{where} has index format version {values.get('format_version')}; "
            f"this reidkit reads version {FORMAT_VERSION}"
        )
