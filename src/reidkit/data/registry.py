"""Loading a dataset by registry name: the name lookup and the option checks that every registry shares.

A registry (:data:`reidkit.data.datasets.DATASETS`, :data:`reidkit.data.video_datasets.VIDEO_DATASETS`) maps a
name to ``loader(root, **options)``; the loader's keyword-only parameters are its options, so the checks here
read them from its signature.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from reidkit.errors import DatasetError

_Loaded = TypeVar("_Loaded")


def registry_key(name: str) -> str:
    """``name`` as registries compare it: case, spaces around it, ``-`` and ``_`` ignored."""
    return name.strip().lower().replace("-", "").replace("_", "")


def load_from_registry(
    registry: Mapping[str, Callable[..., _Loaded]],
    name: str,
    root: str | Path,
    options: Mapping[str, Any],
    *,
    kind: str,
    aliases: Mapping[str, str] | None = None,
) -> _Loaded:
    """Find ``name`` in ``registry`` and call its loader with ``root`` and the checked ``options``.

    Args:
        registry: name -> ``loader(root, **options)``.
        name: a key of ``registry`` or ``aliases``, compared by :func:`registry_key`.
        root: passed to the loader.
        options: the loader's keyword-only options.
        kind: what the registry holds, for the messages (``"dataset"``, ``"video dataset"``).
        aliases: other names, each mapped to a key of ``registry``.

    Raises:
        DatasetError: an unknown name or option (the message lists the choices), an option value of the
            wrong kind, or any error of the loader.
    """
    aliases = aliases or {}
    names = {registry_key(key): key for key in registry}
    names.update({registry_key(alias): target for alias, target in aliases.items()})
    key = names.get(registry_key(name))
    if key is None:
        raise DatasetError(f"unknown {kind} {name!r}; choose from {', '.join(sorted([*registry, *aliases]))}")
    loader = registry[key]
    parameters = inspect.signature(loader).parameters
    accepted = [p for p, spec in parameters.items() if spec.kind == inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DatasetError(
            f"{kind} {key!r} does not take the option(s) {', '.join(unknown)}; "
            f"it takes {', '.join(accepted) if accepted else 'none'}"
        )
    for option, value in options.items():
        _check_option_type(option, value, parameters[option].default, dataset=key)
    return loader(root, **options)


def _check_option_type(option: str, value: Any, default: Any, *, dataset: str) -> None:
    """Options may come from YAML or the command line: reject a value of the wrong kind with a clear message."""
    if isinstance(default, bool):
        valid, expected = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        valid, expected = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        valid, expected = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    else:
        valid, expected = value is None or isinstance(value, (str, os.PathLike)), "a string"
    if not valid:
        raise DatasetError(f"dataset {dataset!r}: option {option} must be {expected}, got {value!r}")
