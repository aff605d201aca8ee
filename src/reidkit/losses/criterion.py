"""`Criterion`: the weighted sum of a list of loss terms, applied to the model outputs they select.

A term is ``{"name": str, "weight": float = 1.0, "on": str, "params": dict = {}}``. ``name`` picks a plain
loss function from :data:`LOSSES`; ``params`` are passed to it as keyword arguments (checked against its
signature when the criterion is built); ``on`` picks the model output with :meth:`ReidOutput.select`. When the
selection is a list of tensors (MGN's global features, PCB's stripes) the term is the mean of the loss over
the list; ``on: output`` passes the whole :class:`ReidOutput` (``aligned_triplet``). Losses with learnable
state (center-loss centres, the verification pair head) get it from the criterion, which owns it as
parameters, so ``criterion.parameters()`` and ``criterion.state_dict()`` carry it. A state builder's own
keyword parameters are term params too: they configure the state and are not passed to the loss.

The ``cluster_contrast`` term (unsupervised adaptation) holds a cluster memory as its state
(:meth:`Criterion.cluster_memory`); it takes the batch's pids as pseudo-labels and its camids, selects one
tensor (``on: embedding`` by default, or ``global`` for a model with one global feature) and updates the
memory by momentum inside its forward, on detached features, only while the criterion is in training mode.

The ``attributes`` term is the exception to "one selected output": it takes every ``output.extra`` entry named
``"<on>.<attribute>"`` (``on`` defaults to ``"attributes"``) as that attribute's ``[B, V]`` logits, and the
batch's ``attributes`` labels (see :func:`reidkit.losses.identity.attribute_loss`).

Images with pid -1 (unlabelled extra images, see :func:`reidkit.losses.identity.lsro`) are seen only by the
terms in :data:`ACCEPTS_UNLABELLED`; every other term is computed on the labelled images of the batch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from reidkit.data.batch import Batch
from reidkit.distance import METRICS
from reidkit.errors import ConfigError
from reidkit.losses.aligned import aligned_triplet
from reidkit.losses.center import center_loss, init_centers
from reidkit.losses.cluster import cluster_contrast, cluster_memory_state
from reidkit.losses.identity import UNLABELLED, attribute_loss, cross_entropy, lsro
from reidkit.losses.mutual import metric_mutual, mutual_kl
from reidkit.losses.pairwise import contrastive
from reidkit.losses.parts import visible_part_cross_entropy
from reidkit.losses.quadruplet import quadruplet
from reidkit.losses.triplet import TRIPLET_MODES, adaptive_triplet, improved_triplet, msml, trihard, triplet
from reidkit.losses.verification import NEGATIVE_MINING, PairHead, verification
from reidkit.models.output import ReidOutput

#: loss name -> plain loss function ``f(selected_output, pids, **params) -> Tensor``.
LOSSES: dict[str, Callable[..., Tensor]] = {
    "cross_entropy": cross_entropy,
    "lsro": lsro,
    "triplet": triplet,
    "improved_triplet": improved_triplet,
    "trihard": trihard,
    "adaptive_triplet": adaptive_triplet,
    "msml": msml,
    "contrastive": contrastive,
    "quadruplet": quadruplet,
    "center": center_loss,
    "verification": verification,
    "attributes": attribute_loss,
    "aligned_triplet": aligned_triplet,
    "mutual_kl": mutual_kl,
    "metric_mutual": metric_mutual,
    "cluster_contrast": cluster_contrast,
    "visible_part_cross_entropy": visible_part_cross_entropy,
}

#: the model output a term uses when its ``on`` key is left out.
DEFAULT_ON: dict[str, str] = {
    "cross_entropy": "logits",
    "lsro": "logits",
    "attributes": "attributes",
    "aligned_triplet": "output",
    "visible_part_cross_entropy": "output",
    "mutual_kl": "mutual.logits",
    "metric_mutual": "mutual.global",
    "cluster_contrast": "embedding",
}

#: ``on`` value that passes the whole :class:`ReidOutput` to the loss (e.g. ``aligned_triplet``).
WHOLE_OUTPUT = "output"

#: losses whose inputs are stacked per member ``[M, B, ...]`` (mutual learning): the batch is dimension 1.
MEMBER_LOSSES = frozenset({"mutual_kl", "metric_mutual"})
_DEFAULT_ON_METRIC = "global"

#: losses that take images with pid -1 (unlabelled); other terms never see those images.
ACCEPTS_UNLABELLED = frozenset({"lsro"})

#: allowed values of string parameters shared by several losses.
PARAM_CHOICES: dict[str, tuple[str, ...]] = {
    "metric": METRICS,
    "mode": TRIPLET_MODES,
    "negative_mining": NEGATIVE_MINING,
}

#: loss name -> builder of its state: ``(num_classes, feat_dim, **state params) -> {argument name: Parameter
#: or Module}``; the builder's keyword-only parameters are term params that configure the state.
STATE_BUILDERS: dict[str, Callable[..., dict[str, nn.Parameter | nn.Module]]] = {
    "center": lambda num_classes, feat_dim: {"centers": init_centers(num_classes, feat_dim)},
    "verification": lambda num_classes, feat_dim: {"head": PairHead(feat_dim)},
    "cluster_contrast": cluster_memory_state,
}

#: losses with a memory that take the batch's camids and update in training mode; they select one tensor.
MEMORY_LOSSES = frozenset({"cluster_contrast"})

#: loss-function arguments the criterion fills itself; never set in a term's params.
_SUPPLIED_ARGUMENTS = frozenset({"generator", "camids", "update"})
_TERM_KEYS = ("name", "weight", "on", "params")


class _TermState(nn.Module):
    """Holds one term's learnable state so that it shows up in ``parameters()`` and ``state_dict()``."""

    def __init__(self, items: Mapping[str, nn.Parameter | nn.Module]) -> None:
        super().__init__()
        self.names = tuple(items)
        for key, value in items.items():
            setattr(self, key, value)

    def arguments(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.names}


@dataclass
class LossTerm:
    """One resolved term of a :class:`Criterion`."""

    name: str
    weight: float
    on: str
    params: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    seed: int | None = None


def _fail(index: int, name: str | None, message: str) -> ConfigError:
    where = f"terms[{index}]" + (f" ({name!r})" if name else "")
    return ConfigError(f"{where}: {message}")


def _state_parameters(name: str) -> dict[str, inspect.Parameter]:
    """The keyword-only parameters of a loss's state builder (term params that configure its state)."""
    if name not in STATE_BUILDERS:
        return {}
    signature = inspect.signature(STATE_BUILDERS[name])
    return {
        key: parameter
        for key, parameter in signature.parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }


def _check_value(
    index: int, name: str, key: str, value: Any, default: Any, *, shared_choices: bool = True
) -> None:
    """Check a parameter value against the type of the function's default and the known choices.

    ``shared_choices=False`` skips :data:`PARAM_CHOICES` (a state builder checks its own values).
    """
    if isinstance(default, bool):
        ok = isinstance(value, bool)
        expected = "true or false"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        expected = "a number"
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        expected = "an integer"
    elif isinstance(default, str):
        ok = isinstance(value, str)
        expected = "a string"
    else:
        ok, expected = True, ""
    if not ok:
        raise _fail(index, name, f"parameter {key!r} must be {expected}, got {value!r}")
    choices = PARAM_CHOICES.get(key) if shared_choices else None
    if choices is not None and value not in choices:
        raise _fail(index, name, f"parameter {key!r} must be one of {list(choices)}, got {value!r}")


def _resolve_term(index: int, term: Any, base_seed: int) -> LossTerm:
    if not isinstance(term, Mapping):
        raise _fail(index, None, f"expected a mapping with keys {list(_TERM_KEYS)}, got {term!r}")
    if True in term and "on" not in term:
        # YAML 1.1 (PyYAML) reads an unquoted ``on:`` key as the boolean True.
        term = {("on" if key is True else key): value for key, value in term.items()}
    unknown = sorted((str(key) for key in set(term) - set(_TERM_KEYS)), key=str)
    name = term.get("name")
    if unknown:
        raise _fail(
            index,
            name if isinstance(name, str) else None,
            f"unknown keys {unknown}; allowed keys are {list(_TERM_KEYS)}",
        )
    if not isinstance(name, str) or name not in LOSSES:
        raise _fail(index, None, f"unknown loss name {name!r}; choose from {sorted(LOSSES)}")
    weight = term.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise _fail(index, name, f"'weight' must be a number, got {weight!r}")
    on = term.get("on", DEFAULT_ON.get(name, _DEFAULT_ON_METRIC))
    if not isinstance(on, str) or not on:
        raise _fail(
            index, name, f"'on' must be a model output name such as {sorted(ReidOutput.FIELDS)}, got {on!r}"
        )
    params = term.get("params", {}) or {}
    if not isinstance(params, Mapping):
        raise _fail(index, name, f"'params' must be a mapping of parameter name to value, got {params!r}")
    params = dict(params)

    function = LOSSES[name]
    signature = inspect.signature(function)
    state_parameters = _state_parameters(name)
    state_arguments = set(STATE_BUILDERS[name](1, 1)) if name in STATE_BUILDERS else set()
    configurable = {
        key: parameter
        for position, (key, parameter) in enumerate(signature.parameters.items())
        if position >= 2 and key not in state_arguments and key not in _SUPPLIED_ARGUMENTS
    }
    configurable.update(state_parameters)
    takes_generator = "generator" in signature.parameters
    seed = params.pop("seed", base_seed + index) if takes_generator else None
    if takes_generator and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _fail(index, name, f"parameter 'seed' must be an integer, got {seed!r}")
    unknown_params = sorted(set(params) - set(configurable))
    if unknown_params:
        allowed = sorted(configurable) + (["seed"] if takes_generator else [])
        raise _fail(index, name, f"unknown parameters {unknown_params}; {name!r} takes {allowed}")
    for key, value in params.items():
        _check_value(
            index, name, key, value, configurable[key].default, shared_choices=key not in state_parameters
        )
    if any(key in state_parameters for key in params):
        try:  # the state's own checks (choices, ranges), reported against the term
            STATE_BUILDERS[name](1, 1, **{key: params[key] for key in params if key in state_parameters})
        except ValueError as error:
            raise _fail(index, name, str(error)) from None
    missing = sorted(
        key
        for key, parameter in configurable.items()
        if parameter.default is inspect.Parameter.empty and key not in params
    )
    if missing:
        raise _fail(index, name, f"missing required parameters {missing}")
    return LossTerm(name=name, weight=float(weight), on=on, params=params, seed=seed)


def _state_key(index: int, name: str) -> str:
    return f"{index}_{name}"


class Criterion(nn.Module):
    """Weighted sum of loss terms over a model's :class:`ReidOutput` (build it with :func:`build_criterion`).

    Attributes:
        terms: the resolved terms, in config order; ``terms[i].label`` is the name logged for the term
            (``"trihard@global"``; a repeated label gets ``#2``, ``#3``...).
        state: learnable state of the terms that have some, keyed ``"<index>_<name>"``.
    """

    def __init__(self, terms: Sequence[LossTerm], *, num_classes: int, feat_dim: int) -> None:
        super().__init__()
        self.terms = list(terms)
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.state = nn.ModuleDict()
        self._generators: dict[str, torch.Generator] = {}
        seen: dict[str, int] = {}
        for index, term in enumerate(self.terms):
            base = f"{term.name}@{term.on}"
            seen[base] = seen.get(base, 0) + 1
            term.label = base if seen[base] == 1 else f"{base}#{seen[base]}"
            key = _state_key(index, term.name)
            if term.name in STATE_BUILDERS:
                state_params = {
                    name: value for name, value in term.params.items() if name in _state_parameters(term.name)
                }
                self.state[key] = _TermState(STATE_BUILDERS[term.name](num_classes, feat_dim, **state_params))
            if term.seed is not None:
                self._generators[key] = torch.Generator().manual_seed(term.seed)

    def pair_head(self) -> PairHead | None:
        """The pair head of the first ``verification`` term (for pairwise scoring at evaluation), or None."""
        for index, term in enumerate(self.terms):
            if term.name == "verification":
                return self.state[_state_key(index, term.name)].head
        return None

    def cluster_memory(self) -> nn.Module | None:
        """The memory of the first ``cluster_contrast`` term (the adaptation loop resets it), or None.

        Returns:
            A :class:`reidkit.adapt.memory.ClusterMemory` (or ``CameraMemory`` with ``camera_aware``), or None.
        """
        for index, term in enumerate(self.terms):
            if term.name == "cluster_contrast":
                return self.state[_state_key(index, term.name)].memory
        return None

    def extra_repr(self) -> str:
        return ", ".join(f"{term.weight:g}*{term.label}" for term in self.terms)

    def get_extra_state(self) -> dict[str, Tensor]:
        """Random-generator states of the terms that sample (so a resumed run draws the same triplets)."""
        return {key: generator.get_state() for key, generator in self._generators.items()}

    def set_extra_state(self, state: dict[str, Tensor]) -> None:
        for key, generator_state in state.items():
            if key in self._generators:
                self._generators[key].set_state(generator_state)

    def _term_arguments(self, index: int, term: LossTerm) -> dict[str, Any]:
        key = _state_key(index, term.name)
        state_parameters = _state_parameters(term.name)
        arguments = {name: value for name, value in term.params.items() if name not in state_parameters}
        if key in self.state:
            arguments.update(self.state[key].arguments())
        if key in self._generators:
            arguments["generator"] = self._generators[key]
        return arguments

    def _attribute_term(
        self,
        index: int,
        term: LossTerm,
        output: ReidOutput,
        attribute_labels: Mapping[str, Tensor] | None,
        keep: Tensor | None,
    ) -> Tensor:
        prefix = f"{term.on}."
        logits = {key[len(prefix) :]: value for key, value in output.extra.items() if key.startswith(prefix)}
        if not logits:
            raise ConfigError(
                f"terms[{index}] ({term.name!r}): the model output has no attribute logits "
                f"(extra entries named '{prefix}<attribute>'); it has {sorted(output.extra)}"
            )
        if attribute_labels is None:
            raise ConfigError(
                f"terms[{index}] ({term.name!r}): the batch has no attribute labels "
                "(give the dataset an attribute CSV or remove this term)"
            )
        labels = dict(attribute_labels)
        if keep is not None:
            logits = {key: value[keep] for key, value in logits.items()}
            labels = {key: value[keep] for key, value in labels.items()}
        return attribute_loss(logits, labels, **term.params)

    def forward(self, output: ReidOutput, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """Compute the total loss.

        Args:
            output: the model's outputs for a batch of ``B`` images.
            batch: the batch they came from: ``batch.pids`` ``[B]`` identity labels (-1 for unlabelled
                images); ``batch.attributes`` (attribute name -> ``[B]`` labels) is needed only by an
                ``attributes`` term.

        Returns:
            ``(total, logs)``: the scalar ``sum_t weight_t * loss_t`` and ``{label: loss_t}`` (unweighted
            term values as floats).
        """
        pids, attribute_labels = batch.pids, batch.attributes
        labelled = pids != UNLABELLED
        all_labelled = bool(labelled.all())
        total: Tensor | None = None
        logs: dict[str, float] = {}
        for index, term in enumerate(self.terms):
            if term.name == "attributes":
                value = self._attribute_term(
                    index, term, output, attribute_labels, None if all_labelled else labelled
                )
                logs[term.label] = float(value.detach())
                total = term.weight * value if total is None else total + term.weight * value
                continue
            term_pids, term_camids = pids, batch.camids
            if term.on == WHOLE_OUTPUT:
                if not all_labelled and term.name not in ACCEPTS_UNLABELLED:
                    raise ConfigError(
                        f"terms[{index}] ({term.name!r}): takes the whole model output, which cannot be "
                        "restricted to the labelled images; train it without unlabelled (pid -1) images"
                    )
                items: list[Any] = [output]
            else:
                try:
                    selection = output.select(term.on)
                except (KeyError, ValueError) as error:
                    raise ConfigError(f"terms[{index}] ({term.name!r}): 'on: {term.on}': {error}") from None
                items = selection if isinstance(selection, list) else [selection]
                if not all_labelled and term.name not in ACCEPTS_UNLABELLED:
                    batch_dim = 1 if term.name in MEMBER_LOSSES else 0
                    keep = labelled.nonzero().squeeze(1)
                    items = [item.index_select(batch_dim, keep) for item in items]
                    term_pids, term_camids = pids[labelled], batch.camids[labelled]
            arguments = self._term_arguments(index, term)
            if term.name in MEMORY_LOSSES:
                if len(items) != 1:
                    raise ConfigError(
                        f"terms[{index}] ({term.name!r}): 'on: {term.on}' selects {len(items)} tensors; "
                        "the term's memory takes one (select 'embedding' or a single output)"
                    )
                arguments.update(camids=term_camids, update=self.training)
            function = LOSSES[term.name]
            value = torch.stack([function(item, term_pids, **arguments) for item in items]).mean()
            logs[term.label] = float(value.detach())
            weighted = term.weight * value
            total = weighted if total is None else total + weighted
        assert total is not None  # build_criterion refuses an empty term list
        return total, logs


def build_criterion(
    terms: Sequence[Mapping[str, Any]], *, num_classes: int, feat_dim: int, seed: int = 0
) -> Criterion:
    """Build a :class:`Criterion` from a list of loss terms (a recipe's ``loss.terms``).

    Args:
        terms: ``[{"name": str, "weight": float = 1.0, "on": str, "params": dict = {}}, ...]``; ``on``
            defaults to ``"logits"`` for classification losses and ``"global"`` for metric losses. A loss
            that samples (``triplet`` with ``mode: random``, ``verification`` with ``negative_mining:
            random``) also takes an integer ``seed`` parameter (default ``seed + index of the term``);
            ``cluster_contrast`` takes its memory's ``temperature``, ``momentum``, ``mode`` (``mean`` /
            ``hard``), ``camera_aware`` and ``inter_weight``.
        num_classes: number of training identities (size of the center-loss bank).
        feat_dim: feature dimension of the outputs the stateful terms use (centres, pair head).
        seed: base seed of the random generators of sampling terms (pass the training seed).

    Returns:
        The criterion.

    Raises:
        ConfigError: an empty list, an unknown term key or loss name, an unknown parameter or a value of the
            wrong type; the message names the term and the allowed choices.
    """
    if isinstance(terms, (str, bytes)) or not isinstance(terms, Sequence):
        raise ConfigError(f"terms: expected a list of loss terms, got {terms!r}")
    if not terms:
        raise ConfigError(f"terms: expected at least one loss term; choose from {sorted(LOSSES)}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed: expected an integer, got {seed!r}")
    resolved = [_resolve_term(index, term, seed) for index, term in enumerate(terms)]
    return Criterion(resolved, num_classes=num_classes, feat_dim=feat_dim)
