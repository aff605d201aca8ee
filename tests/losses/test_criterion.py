"""Criterion: building from config dicts, weights, list averaging, errors and learnable state."""

from __future__ import annotations

import pytest
import torch

from reidkit.data.batch import Batch
from reidkit.errors import ConfigError
from reidkit.losses import (
    LOSSES,
    attribute_loss,
    build_criterion,
    center_loss,
    contrastive,
    cross_entropy,
    lsro,
    msml,
    trihard,
    triplet,
    verification,
)
from reidkit.models.output import ReidOutput

NUM_CLASSES, FEAT_DIM = 4, 6


def make_output(dtype=torch.float32, seed=0, requires_grad=True):
    generator = torch.Generator().manual_seed(seed)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])

    def leaf(*shape):
        return torch.randn(*shape, generator=generator, dtype=dtype).requires_grad_(requires_grad)

    output = ReidOutput(
        embedding=leaf(8, FEAT_DIM),
        global_features=[leaf(8, FEAT_DIM), leaf(8, FEAT_DIM)],
        part_features=[leaf(8, FEAT_DIM), leaf(8, FEAT_DIM), leaf(8, FEAT_DIM)],
        logits=[leaf(8, NUM_CLASSES)],
        local_features=leaf(8, 4, FEAT_DIM),
        extra={
            "attributes.hat": leaf(8, 2),
            "attributes.colour": leaf(8, 3),
            "mutual.logits": leaf(2, 8, NUM_CLASSES),
            "mutual.global": leaf(2, 8, FEAT_DIM),
            "pose.part_logits": leaf(8, 3, NUM_CLASSES),
            "pose.visible": (torch.arange(24).reshape(8, 3) % 4 != 0).to(dtype),
        },
    )
    return output, pids


def _batch(pids, attributes=None):
    """The labels of a batch of ``len(pids)`` images (the criterion never reads the images)."""
    return Batch(torch.zeros(len(pids), 3, 2, 1), pids, torch.zeros_like(pids), attributes)


ATTRIBUTE_LABELS = {
    "hat": torch.tensor([0, 1, 0, 1, -1, 0, 1, 1]),
    "colour": torch.tensor([2, 2, 0, 1, 0, 0, 1, 2]),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_registered_loss_builds_runs_and_backpropagates(name):
    criterion = build_criterion([{"name": name}], num_classes=NUM_CLASSES, feat_dim=FEAT_DIM)
    if criterion.cluster_memory() is not None:  # filled by the adaptation loop every epoch
        criterion.cluster_memory().reset(torch.randn(NUM_CLASSES, FEAT_DIM))
    output, pids = make_output()
    total, logs = criterion(output, _batch(pids, ATTRIBUTE_LABELS))
    assert total.dim() == 0 and torch.isfinite(total)
    assert list(logs) == [criterion.terms[0].label]
    assert logs[criterion.terms[0].label] == pytest.approx(total.item())
    total.backward()
    leaves = (
        [output.embedding]
        + output.global_features
        + output.logits
        + [output.local_features]
        + list(output.extra.values())
    )
    gradients = [t.grad for t in leaves]
    assert any(g is not None and g.abs().sum() > 0 for g in gradients)
    for parameter in criterion.parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()


def test_total_is_the_weighted_sum_and_lists_are_averaged():
    terms = [
        {"name": "cross_entropy", "weight": 1.0, "on": "logits", "params": {"epsilon": 0.1}},
        {"name": "trihard", "weight": 0.5, "on": "global", "params": {"margin": 0.2, "metric": "cosine"}},
        {"name": "contrastive", "weight": 2, "on": "parts"},
    ]
    criterion = build_criterion(terms, num_classes=NUM_CLASSES, feat_dim=FEAT_DIM)
    output, pids = make_output(torch.float64)
    total, logs = criterion(output, _batch(pids))
    ce = cross_entropy(output.logits[0], pids, epsilon=0.1).item()
    th = [trihard(f, pids, margin=0.2, metric="cosine").item() for f in output.global_features]
    co = [contrastive(f, pids).item() for f in output.part_features]
    assert logs == pytest.approx(
        {"cross_entropy@logits": ce, "trihard@global": sum(th) / 2, "contrastive@parts": sum(co) / 3}
    )
    assert total.item() == pytest.approx(ce + 0.5 * sum(th) / 2 + 2.0 * sum(co) / 3)
    assert total.dtype == torch.float64


def test_defaults_for_on_and_weight_and_repeated_labels():
    criterion = build_criterion(
        [{"name": "cross_entropy"}, {"name": "triplet"}, {"name": "triplet", "params": {"margin": 1.0}}],
        num_classes=NUM_CLASSES,
        feat_dim=FEAT_DIM,
    )
    assert [term.on for term in criterion.terms] == ["logits", "global", "global"]
    assert [term.weight for term in criterion.terms] == [1.0, 1.0, 1.0]
    assert [term.label for term in criterion.terms] == [
        "cross_entropy@logits",
        "triplet@global",
        "triplet@global#2",
    ]


def test_embedding_and_extra_outputs_can_be_selected():
    output, pids = make_output(torch.float64)
    output.extra["pooled"] = output.global_features[1]
    criterion = build_criterion(
        [{"name": "msml", "on": "embedding"}, {"name": "msml", "on": "pooled"}], num_classes=4, feat_dim=6
    )
    _, logs = criterion(output, _batch(pids))
    assert logs["msml@embedding"] == pytest.approx(msml(output.embedding, pids).item())
    assert logs["msml@pooled"] == pytest.approx(msml(output.global_features[1], pids).item())


@pytest.mark.parametrize(
    ("terms", "message"),
    [
        ([{"name": "trihrd"}], r"terms\[0\]: unknown loss name 'trihrd'; choose from \[.*'trihard'"),
        ([{"name": "trihard", "wieght": 1}], r"\('trihard'\): unknown keys \['wieght'\]; allowed keys are"),
        ([{"name": "trihard", "params": {"margn": 0.3}}], r"unknown parameters \['margn'\]; 'trihard' takes"),
        (
            [{"name": "trihard", "params": {"margin": "wide"}}],
            r"parameter 'margin' must be a number, got 'wide'",
        ),
        ([{"name": "trihard", "params": {"soft": 1}}], r"parameter 'soft' must be true or false"),
        (
            [{"name": "trihard", "params": {"metric": "l1"}}],
            r"parameter 'metric' must be one of \['euclidean'",
        ),
        (
            [{"name": "triplet", "params": {"mode": "semi"}}],
            r"parameter 'mode' must be one of \['all', 'random'\]",
        ),
        ([{"name": "triplet", "params": {"seed": 1.5}}], r"parameter 'seed' must be an integer"),
        ([{"name": "trihard", "params": {"seed": 1}}], r"unknown parameters \['seed'\]"),
        ([{"name": "center", "params": {"centers": 1}}], r"unknown parameters \['centers'\]"),
        ([{"name": "triplet", "params": {"generator": 1}}], r"unknown parameters \['generator'\]"),
        ([{"name": "verification", "params": {"negative_mining": "x"}}], r"'negative_mining' must be one of"),
        (
            [{"name": "cross_entropy"}, {"name": "lsro", "weight": "1"}],
            r"terms\[1\] \('lsro'\): 'weight'",
        ),
        ([{"name": "trihard", "on": ""}], r"'on' must be a model output name"),
        ([{"name": "trihard", "params": [1]}], r"'params' must be a mapping"),
        (["trihard"], r"terms\[0\]: expected a mapping with keys"),
        ([], r"terms: expected at least one loss term"),
        ("trihard", r"terms: expected a list of loss terms"),
    ],
)
def test_bad_terms_fail_at_build_time_with_the_term_and_choices(terms, message):
    with pytest.raises(ConfigError, match=message):
        build_criterion(terms, num_classes=NUM_CLASSES, feat_dim=FEAT_DIM)


def test_missing_output_field_names_the_term():
    criterion = build_criterion([{"name": "trihard", "on": "local"}], num_classes=4, feat_dim=6)
    output, pids = make_output()
    output.local_features = None
    with pytest.raises(ConfigError, match=r"terms\[0\] \('trihard'\): 'on: local'.*empty"):
        criterion(output, _batch(pids))
    criterion = build_criterion([{"name": "trihard", "on": "stripes"}], num_classes=4, feat_dim=6)
    with pytest.raises(ConfigError, match=r"no field 'stripes'"):
        criterion(output, _batch(pids))


def test_learnable_state_is_in_parameters_and_state_dict_and_round_trips():
    terms = [{"name": "center", "weight": 0.0005}, {"name": "verification", "on": "embedding"}]
    criterion = build_criterion(terms, num_classes=NUM_CLASSES, feat_dim=FEAT_DIM)
    names = {name for name, _ in criterion.named_parameters()}
    assert names == {"state.0_center.centers", "state.1_verification.head.linear.weight",
                     "state.1_verification.head.linear.bias"}  # fmt: skip
    assert criterion.state["0_center"].centers.shape == (NUM_CLASSES, FEAT_DIM)
    state = criterion.state_dict()
    assert set(names) <= set(state)

    output, pids = make_output(torch.float64)
    criterion.double()
    total, logs = criterion(output, _batch(pids))
    centres = criterion.state["0_center"].centers
    head = criterion.state["1_verification"].head
    assert logs["center@global"] == pytest.approx(
        sum(center_loss(f, pids, centres).item() for f in output.global_features) / 2
    )
    assert logs["verification@embedding"] == pytest.approx(verification(output.embedding, pids, head).item())

    before = centres.detach().clone()
    optimizer = torch.optim.SGD(criterion.parameters(), lr=0.5)
    total.backward()
    optimizer.step()
    assert not torch.equal(before, centres.detach())

    rebuilt = build_criterion(terms, num_classes=NUM_CLASSES, feat_dim=FEAT_DIM).double()
    rebuilt.load_state_dict(criterion.state_dict())
    assert torch.equal(rebuilt.state["0_center"].centers, centres)
    assert rebuilt(output, _batch(pids))[0].item() == pytest.approx(criterion(output, _batch(pids))[0].item())


def test_random_triplet_generator_is_seeded_and_resumes_from_state_dict():
    terms = [{"name": "triplet", "params": {"mode": "random", "seed": 7}}]
    output, pids = make_output(torch.float64, requires_grad=False)
    first = build_criterion(terms, num_classes=4, feat_dim=6)
    second = build_criterion(terms, num_classes=4, feat_dim=6)
    values = [first(output, _batch(pids))[0].item() for _ in range(4)]
    assert values == [second(output, _batch(pids))[0].item() for _ in range(4)]
    assert len(set(values)) > 1
    checkpoint = first.state_dict()
    continued = [first(output, _batch(pids))[0].item() for _ in range(3)]
    resumed = build_criterion(terms, num_classes=4, feat_dim=6)
    resumed.load_state_dict(checkpoint)
    assert [resumed(output, _batch(pids))[0].item() for _ in range(3)] == continued
    # the term's generator is shared along the list: item 0 draws first, then item 1.
    generator = torch.Generator().manual_seed(7)
    expected = [triplet(f, pids, mode="random", generator=generator).item() for f in output.global_features]
    fresh = build_criterion(terms, num_classes=4, feat_dim=6)
    assert fresh(output, _batch(pids))[1]["triplet@global"] == pytest.approx(sum(expected) / 2)


def test_unlabelled_images_reach_only_lsro():
    terms = [{"name": "lsro"}, {"name": "cross_entropy"}, {"name": "trihard"}]
    criterion = build_criterion(terms, num_classes=NUM_CLASSES, feat_dim=FEAT_DIM)
    output, pids = make_output(torch.float64)
    pids = torch.tensor([0, 0, 1, 1, -1, -1, 3, 3])
    _, logs = criterion(output, _batch(pids))
    labelled = pids >= 0
    logits = output.logits[0]
    assert logs["lsro@logits"] == pytest.approx(lsro(logits, pids).item())
    assert logs["cross_entropy@logits"] == pytest.approx(
        cross_entropy(logits[labelled], pids[labelled]).item()
    )
    expected = sum(trihard(f[labelled], pids[labelled]).item() for f in output.global_features) / 2
    assert logs["trihard@global"] == pytest.approx(expected)


def test_attribute_term_uses_prefixed_extra_outputs_and_given_labels():
    criterion = build_criterion([{"name": "attributes", "weight": 0.5}], num_classes=4, feat_dim=6)
    output, pids = make_output(torch.float64)
    total, logs = criterion(output, _batch(pids, ATTRIBUTE_LABELS))
    logits = {"hat": output.extra["attributes.hat"], "colour": output.extra["attributes.colour"]}
    expected = attribute_loss(logits, ATTRIBUTE_LABELS).item()
    assert logs["attributes@attributes"] == pytest.approx(expected)
    assert total.item() == pytest.approx(0.5 * expected)
    with pytest.raises(ConfigError, match="no attribute labels"):
        criterion(output, _batch(pids))
    output.extra.clear()
    with pytest.raises(ConfigError, match="no attribute logits"):
        criterion(output, _batch(pids, ATTRIBUTE_LABELS))


def test_unquoted_yaml_on_key_is_accepted():
    yaml = pytest.importorskip("yaml")
    terms = yaml.safe_load("- {name: trihard, on: parts, params: {margin: 0.5}}")
    assert True in terms[0]  # YAML 1.1 reads the key `on` as a boolean
    criterion = build_criterion(terms, num_classes=NUM_CLASSES, feat_dim=FEAT_DIM)
    assert criterion.terms[0].on == "parts" and criterion.terms[0].label == "trihard@parts"


def test_sampling_terms_default_to_the_base_seed_plus_their_index():
    terms = [{"name": "cross_entropy"}, {"name": "triplet", "params": {"mode": "random"}}]
    output, pids = make_output(torch.float64, requires_grad=False)
    criterion = build_criterion(terms, num_classes=4, feat_dim=6, seed=10)
    value = criterion(output, _batch(pids))[1]["triplet@global"]
    generator = torch.Generator().manual_seed(11)
    expected = [triplet(f, pids, mode="random", generator=generator).item() for f in output.global_features]
    assert value == pytest.approx(sum(expected) / 2)
    with pytest.raises(ConfigError, match="seed: expected an integer"):
        build_criterion(terms, num_classes=4, feat_dim=6, seed="1")


def test_pair_head_is_found_for_pairwise_scoring():
    from reidkit.losses import pair_scores

    criterion = build_criterion(
        [{"name": "cross_entropy"}, {"name": "verification"}], num_classes=NUM_CLASSES, feat_dim=FEAT_DIM
    )
    head = criterion.pair_head()
    assert head is criterion.state["1_verification"].head
    assert pair_scores(head, torch.randn(2, FEAT_DIM), torch.randn(3, FEAT_DIM)).shape == (2, 3)
    assert build_criterion([{"name": "trihard"}], num_classes=4, feat_dim=6).pair_head() is None


def test_whole_output_and_member_stacked_terms():
    from reidkit.losses.aligned import aligned_triplet
    from reidkit.losses.mutual import metric_mutual, mutual_kl

    terms = [{"name": "aligned_triplet"}, {"name": "mutual_kl"}, {"name": "metric_mutual"}]
    criterion = build_criterion(terms, num_classes=NUM_CLASSES, feat_dim=FEAT_DIM)
    assert [term.on for term in criterion.terms] == ["output", "mutual.logits", "mutual.global"]
    output, pids = make_output(torch.float64)
    _, logs = criterion(output, _batch(pids))
    assert logs["aligned_triplet@output"] == pytest.approx(aligned_triplet(output, pids).item())
    assert logs["mutual_kl@mutual.logits"] == pytest.approx(
        mutual_kl(output.extra["mutual.logits"], pids).item()
    )
    # unlabelled images are dropped along the batch dimension (1) of member-stacked inputs
    pids = torch.tensor([0, 0, 1, 1, -1, 2, 3, 3])
    keep = pids >= 0
    _, logs = build_criterion(terms[2:], num_classes=4, feat_dim=6)(output, _batch(pids))
    expected = metric_mutual(output.extra["mutual.global"][:, keep], pids[keep]).item()
    assert logs["metric_mutual@mutual.global"] == pytest.approx(expected)
    with pytest.raises(ConfigError, match="whole model output"):
        build_criterion(terms[:1], num_classes=4, feat_dim=6)(output, _batch(pids))
