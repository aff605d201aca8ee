"""Milvus boolean expressions for the metadata filters of :meth:`reidkit.index.Index.search`.

The FAISS backend filters in SQL (:meth:`reidkit.index.store.GalleryStore.filter_ids`); this module writes the same
filters as a Milvus ``filter`` expression, with the same meaning: ``camera`` and ``pid`` take one value or a list
(an empty list passes nothing), ``exclude_camera`` keeps the items without a camera, ``since`` / ``until`` and
``frames`` are inclusive bounds, and an item without a timestamp (or frame) fails a bound on it.

Strings are written as double-quoted literals with the C-style escapes Milvus reads (``\\"``, ``\\\\``,
``\\n``, ``\\r``, ``\\t``); other control characters cannot be written and are refused.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from reidkit.index.items import GalleryIndexError, filter_values, is_integer, to_timestamp

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: the expressions that no item passes (an empty ``camera`` or ``pid`` list) and that every item passes (an
#: empty ``exclude_camera`` list); Milvus ids are positive
NOTHING = "id < 0"
EVERYTHING = "id >= 0"


def literal(value: str | int | float, what: str = "value") -> str:
    """One value as a Milvus expression literal.

    Raises:
        GalleryIndexError: a string with a control character other than newline, return and tab, a float
            that is not finite, or another type; the message names ``what``.
    """
    if isinstance(value, str):
        bad = sorted({ch for ch in value if ord(ch) < 32 and ch not in _ESCAPES})
        if bad:
            raise GalleryIndexError(
                f"{what} {value!r} holds control characters {bad} that a Milvus filter cannot express"
            )
        return '"' + "".join(_ESCAPES.get(ch, ch) for ch in value) + '"'
    if is_integer(value):
        return str(int(value))
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    raise GalleryIndexError(f"{what} must be a string, an integer or a finite number, got {value!r}")


def one_of(field: str, values: Sequence[Any], what: str) -> str:
    """``field in [...]`` (:data:`NOTHING` for no values)."""
    if not values:
        return NOTHING
    return f"{field} in [{', '.join(literal(value, what) for value in values)}]"


def _cameras(value: Any) -> list[str] | None:
    values = filter_values(value)
    return None if values is None else [str(camera) for camera in values]


def filter_expression(
    *,
    camera: Any = None,
    exclude_camera: Any = None,
    since: Any = None,
    until: Any = None,
    pid: Any = None,
    frames: tuple[int | None, int | None] | None = None,
) -> str | None:
    """The Milvus expression of these filters (see the module docstring), or None when no filter is set.

    Raises:
        GalleryIndexError: a pid or frame that is not an integer, or a time bound that is not a timestamp.
    """
    clauses: list[str] = []
    cameras = _cameras(camera)
    if cameras is not None:
        clauses.append(one_of("camera", cameras, "camera"))
    excluded = _cameras(exclude_camera)
    if excluded == []:
        clauses.append(EVERYTHING)
    elif excluded:
        clauses.append(f"camera is null or not ({one_of('camera', excluded, 'exclude_camera')})")
    pids = filter_values(pid)
    if pids is not None:
        if not all(is_integer(value) for value in pids):
            raise GalleryIndexError(f"pid filter must be integers, got {pids!r}")
        clauses.append(one_of("pid", pids, "pid"))
    for operator, bound, name in ((">=", since, "since"), ("<=", until, "until")):
        if bound is not None:
            try:
                seconds = to_timestamp(bound)
            except (TypeError, ValueError) as error:
                raise GalleryIndexError(f"{name} {error}") from None
            clauses.append(f"timestamp {operator} {literal(float(seconds), name)}")
    low, high = frames if frames is not None else (None, None)
    for operator, bound in ((">=", low), ("<=", high)):
        if bound is not None:
            if not is_integer(bound):
                raise GalleryIndexError(f"frames bounds must be integers, got {bound!r}")
            clauses.append(f"frame {operator} {int(bound)}")
    if not clauses:
        return None
    return " and ".join(f"({clause})" for clause in clauses)


def extra_expression(values: dict[str, str | int]) -> str:
    """Items whose JSON ``extra`` holds every ``key: value`` of ``values`` (all items for none)."""
    clauses = []
    for key, value in values.items():
        if not isinstance(value, str) and not is_integer(value):
            raise GalleryIndexError(f"extra value for {key!r} must be a string or an integer, got {value!r}")
        clauses.append(f"extra[{literal(str(key), 'extra key')}] == {literal(value, f'extra[{key!r}]')}")
    return " and ".join(clauses) or EVERYTHING


def settings_property(values: dict[str, Any]) -> str:
    """The settings as the JSON text stored in the collection's ``reidkit.settings`` property."""
    return json.dumps(values, sort_keys=True)
