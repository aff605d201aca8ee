"""The shared registry lookup: names, aliases, option checks."""

from __future__ import annotations

import pytest

from reidkit.data.registry import load_from_registry, registry_key
from reidkit.errors import DatasetError


def _plain(root, *, scale: float = 1.0, flag: bool = False):
    return ("plain", root, scale, flag)


def _bare(root):
    return ("bare", root)


REGISTRY = {"plain_set": _plain, "bare": _bare}


def test_registry_key_ignores_case_spaces_dashes_and_underscores() -> None:
    assert registry_key("  Market-1501 ") == "market1501"
    assert registry_key("Duke_MTMC-reID") == "dukemtmcreid"


def test_names_and_aliases_reach_their_loader() -> None:
    assert load_from_registry(REGISTRY, "Plain-Set", "/r", {"scale": 2}, kind="set") == ("plain", "/r", 2, False)
    found = load_from_registry(REGISTRY, "PLAIN", "/r", {"flag": True}, kind="set", aliases={"plain": "plain_set"})
    assert found == ("plain", "/r", 1.0, True)


def test_unknown_name_lists_keys_and_aliases() -> None:
    with pytest.raises(DatasetError, match=r"^unknown test set 'other'; choose from bare, plain, plain_set$"):
        load_from_registry(REGISTRY, "other", "/r", {}, kind="test set", aliases={"plain": "plain_set"})


def test_unknown_option_and_wrong_kind_of_value() -> None:
    with pytest.raises(DatasetError, match=r"^test set 'bare' does not take the option\(s\) a, b; it takes none$"):
        load_from_registry(REGISTRY, "bare", "/r", {"b": 1, "a": 2}, kind="test set")
    with pytest.raises(DatasetError, match=r"'plain_set' does not take the option\(s\) size; it takes scale, flag"):
        load_from_registry(REGISTRY, "plain_set", "/r", {"size": 1}, kind="test set")
    with pytest.raises(DatasetError, match=r"^dataset 'plain_set': option flag must be true or false, got 1$"):
        load_from_registry(REGISTRY, "plain_set", "/r", {"flag": 1}, kind="test set")
    with pytest.raises(DatasetError, match=r"option scale must be a number, got True"):
        load_from_registry(REGISTRY, "plain_set", "/r", {"scale": True}, kind="test set")
