"""Cluster memories: hand-computed losses and updates, resizing, and the criterion's cluster_contrast term."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reidkit.adapt import CameraMemory, ClusterMemory, centroids_of, proxies_of
from reidkit.data.batch import Batch
from reidkit.errors import ConfigError
from reidkit.losses import build_criterion
from reidkit.models.output import ReidOutput


def unit(*values: float) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def test_loss_on_a_hand_computed_case():
    memory = ClusterMemory(2, temperature=0.5)
    memory.reset(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))  # normalised on reset
    features = torch.tensor([[3.0, 4.0], [1.0, 0.0]], dtype=torch.float64)
    # f1 = (0.6, 0.8): logits (1.2, 1.6), label 1; f2 = (1, 0): logits (2, 0), label 0
    expected = (math.log(1 + math.exp(-0.4)) + math.log(1 + math.exp(-2.0))) / 2
    assert memory.loss(features, torch.tensor([1, 0])).item() == pytest.approx(expected, abs=1e-7)
    assert memory(features, torch.tensor([1, 0])).item() == pytest.approx(expected, abs=1e-7)


def test_mean_update_by_hand():
    memory = ClusterMemory(2, momentum=0.5)
    memory.reset(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    memory.update(torch.tensor([[0.0, 2.0], [0.0, 3.0], [1.0, 1.0]]), torch.tensor([0, 0, 1]))
    # label 0: mean of (0, 1), (0, 1) -> normalize(0.5 (1, 0) + 0.5 (0, 1))
    # label 1: mean (1/sqrt2, 1/sqrt2) -> normalize(0.5 (0, 1) + 0.5 (0.7071, 0.7071)); label 2 untouched
    half = 0.5 / math.sqrt(2)
    expected = torch.tensor([unit(0.5, 0.5), unit(half, 0.5 + half), [-1.0, 0.0]])
    torch.testing.assert_close(memory.centroids, expected)


def test_hard_update_takes_the_least_similar_feature():
    memory = ClusterMemory(2, momentum=0.25, mode="hard")
    memory.reset(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    features = torch.tensor([[1.0, 0.1], [0.0, 5.0], [0.6, 0.8], [0.0, 1.0], [1.0, 0.0]])
    memory.update(features, torch.tensor([0, 0, 0, 1, 1]))
    # label 0: cosines 0.995, 0, 0.6 -> (0, 1); label 1: cosines 1, 0 -> (1, 0)
    expected = torch.tensor([unit(0.25, 0.75), unit(0.75, 0.25)])
    torch.testing.assert_close(memory.centroids, expected)


def test_the_update_keeps_the_loss_backpropagating_through_the_old_centroids():
    memory = ClusterMemory(3)
    memory.reset(torch.randn(4, 3, generator=torch.Generator().manual_seed(0)))
    old = memory.centroids
    features = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), requires_grad=True)
    labels = torch.tensor([0, 1, 1, 3, 0])
    loss = memory.loss(features, labels)
    memory.update(features.detach(), labels)
    loss.backward()
    expected = torch.autograd.grad(
        F.cross_entropy(F.normalize(features, dim=1) @ old.t() / 0.05, labels), features
    )[0]
    torch.testing.assert_close(features.grad, expected)
    assert not torch.equal(memory.centroids, old) and torch.equal(memory.centroids[2], old[2])


def test_centroids_of_and_proxies_of_by_hand():
    features = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, 5.0], [0.0, 3.0], [1.0, 0.0]])
    labels = torch.tensor([0, 0, -1, 1, 0])
    cameras = torch.tensor([1, 0, 0, 1, 1])
    torch.testing.assert_close(
        centroids_of(features, labels), torch.tensor([unit(2.0, 1.0), [0.0, 1.0]])
    )  # mean of (1, 0), (0, 1), (1, 0)
    proxies, proxy_labels, proxy_cameras = proxies_of(features, labels, cameras)
    torch.testing.assert_close(proxies, torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]))
    assert proxy_labels.tolist() == [0, 0, 1] and proxy_cameras.tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match=r"every label 0..2 needs an item; \[1\] have none"):
        centroids_of(features[:2], torch.tensor([0, 2]))


def test_reset_resizes_and_the_state_dict_round_trips_whatever_the_size():
    source = ClusterMemory(4)
    source.reset(torch.randn(7, 4))
    target = ClusterMemory(4)
    target.reset(torch.randn(2, 4))
    target.load_state_dict(source.state_dict())
    assert torch.equal(target.centroids, source.centroids) and target.num_clusters == 7
    empty = ClusterMemory(4)
    source.reset(torch.randn(3, 4))
    empty.load_state_dict(source.state_dict())
    assert torch.equal(empty.centroids, source.centroids)
    torch.testing.assert_close(empty.centroids.norm(dim=1), torch.ones(3))


def test_memory_refuses_bad_batches():
    memory = ClusterMemory(2)
    with pytest.raises(RuntimeError, match="no centroids; call reset"):
        memory.loss(torch.randn(2, 2), torch.tensor([0, 0]))
    memory.reset(torch.eye(2))
    with pytest.raises(ValueError, match=r"labels: expected cluster labels in \[0, 2\)"):
        memory.loss(torch.randn(2, 2), torch.tensor([0, -1]))
    with pytest.raises(ValueError, match="features: expected dimension 2, got 3"):
        memory.update(torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="mode: expected one of"):
        ClusterMemory(2, mode="median")


def camera_memory(**settings) -> CameraMemory:
    memory = CameraMemory(2, **settings)
    # given unsorted: proxies of (cluster 1, camera 1), (0, 0), (1, 0), (0, 1)
    memory.reset(
        torch.tensor([[0.0, -1.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]),
        torch.tensor([1, 0, 1, 0]),
        torch.tensor([1, 0, 0, 1]),
    )
    return memory


def test_camera_memory_sorts_its_proxies():
    memory = camera_memory()
    assert memory.proxy_labels.tolist() == [0, 0, 1, 1] and memory.proxy_cameras.tolist() == [0, 1, 0, 1]
    torch.testing.assert_close(memory.proxies, torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]))
    assert memory.proxy_index(torch.tensor([1, 0]), torch.tensor([0, 1])).tolist() == [2, 1]
    with pytest.raises(ValueError, match="no proxy for cluster 1 in camera 2"):
        memory.proxy_index(torch.tensor([1]), torch.tensor([2]))


def test_camera_aware_loss_by_hand():
    memory = camera_memory(temperature=1.0, inter_weight=0.5)
    features = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    # item 1: cluster 0, camera 1, similarities (1, 0, -1, 0); camera 1 proxies: 1 and 3 (both 0)
    #   intra = log 2; inter = -mean(1 - logZ, 0 - logZ) over the cluster-0 proxies 0 and 1
    # item 2: cluster 1, camera 0, similarities (0, 1, 0, -1); camera 0 proxies: 0 and 2 (both 0)
    #   intra = log 2; inter = -mean(0 - logZ', -1 - logZ') over the cluster-1 proxies 2 and 3
    log_z1 = math.log(math.e + 1 + math.exp(-1) + 1)
    log_z2 = math.log(1 + math.e + 1 + math.exp(-1))
    intra = math.log(2)
    inter = ((log_z1 - 0.5) + (log_z2 + 0.5)) / 2
    value = memory.loss(features, torch.tensor([0, 1]), torch.tensor([1, 0]))
    assert value.item() == pytest.approx(intra + 0.5 * inter, abs=1e-7)


def test_camera_memory_updates_each_items_own_proxy():
    memory = camera_memory(momentum=0.5)
    before = memory.proxies.clone()
    memory.update(torch.tensor([[1.0, 1.0], [3.0, 0.0]]), torch.tensor([0, 0]), torch.tensor([1, 1]))
    # proxy (0, 1) = (0, 1) moves towards the mean of (0.7071, 0.7071) and (1, 0)
    target = [(1 / math.sqrt(2) + 1) / 2, (1 / math.sqrt(2)) / 2]
    expected = before.clone()
    expected[1] = torch.tensor(unit(0.5 * target[0], 0.5 + 0.5 * target[1]))
    torch.testing.assert_close(memory.proxies, expected)


def test_camera_memory_state_dict_round_trips_with_another_size():
    source = camera_memory()
    target = CameraMemory(2)
    target.load_state_dict(source.state_dict())
    for name in ("proxies", "proxy_labels", "proxy_cameras"):
        assert torch.equal(getattr(target, name), getattr(source, name))


# --- the criterion's cluster_contrast term ---------------------------------------------------------------------

FEAT_DIM = 6


def term_case(seed=0, pids=(0, 0, 1, 1, 2, 2, -1, 1)):
    generator = torch.Generator().manual_seed(seed)
    embedding = torch.randn(len(pids), FEAT_DIM, generator=generator, dtype=torch.float64).requires_grad_(True)
    output = ReidOutput(embedding=embedding, global_features=[embedding * 2, embedding + 1])
    pids = torch.tensor(pids)
    camids = torch.tensor([0, 1, 0, 1, 0, 0, 1, 1])
    return output, Batch(torch.zeros(len(pids), 3, 2, 1), pids, camids)


def test_cluster_contrast_term_loss_gradient_and_update():
    terms = [{"name": "cluster_contrast", "params": {"temperature": 0.1, "momentum": 0.3}}]
    criterion = build_criterion(terms, num_classes=1, feat_dim=FEAT_DIM)
    memory = criterion.cluster_memory()
    assert isinstance(memory, ClusterMemory) and criterion.terms[0].label == "cluster_contrast@embedding"
    assert memory.temperature == 0.1 and memory.momentum == 0.3
    memory.reset(torch.randn(3, FEAT_DIM, generator=torch.Generator().manual_seed(5)))
    old = memory.centroids.clone()
    output, batch = term_case()
    total, logs = criterion(output, batch)
    keep = batch.pids >= 0  # the outlier (pid -1) is left out
    features, labels = output.embedding[keep], batch.pids[keep]
    formula = F.cross_entropy(F.normalize(features, dim=1) @ old.to(torch.float64).t() / 0.1, labels)
    expected_grad = torch.autograd.grad(formula, output.embedding)[0]
    total.backward()
    assert total.item() == pytest.approx(formula.item()) and logs["cluster_contrast@embedding"] == total.item()
    torch.testing.assert_close(output.embedding.grad, expected_grad)
    assert output.embedding.grad[~keep].abs().sum() == 0
    normalised = F.normalize(features.detach(), dim=1).float()
    expected = old.clone()
    for label in range(3):
        mean = normalised[labels == label].mean(dim=0)
        expected[label] = F.normalize(0.3 * old[label] + 0.7 * mean, dim=0)
    torch.testing.assert_close(memory.centroids, expected)


def test_cluster_contrast_term_does_not_update_in_eval_mode():
    criterion = build_criterion([{"name": "cluster_contrast"}], num_classes=1, feat_dim=FEAT_DIM)
    criterion.cluster_memory().reset(torch.randn(3, FEAT_DIM))
    before = criterion.cluster_memory().centroids.clone()
    output, batch = term_case()
    criterion.eval()
    criterion(output, batch)
    assert torch.equal(criterion.cluster_memory().centroids, before)


def test_camera_aware_term_uses_the_batch_camids():
    terms = [{"name": "cluster_contrast", "params": {"camera_aware": True, "inter_weight": 0.25, "mode": "hard"}}]
    criterion = build_criterion(terms, num_classes=1, feat_dim=FEAT_DIM)
    memory = criterion.cluster_memory()
    assert isinstance(memory, CameraMemory) and memory.inter_weight == 0.25 and memory.mode == "hard"
    output, batch = term_case()
    keep = batch.pids >= 0
    memory.reset(*proxies_of(torch.randn(7, FEAT_DIM), batch.pids[keep], batch.camids[keep]))
    reference = CameraMemory(FEAT_DIM, temperature=0.05, inter_weight=0.25, mode="hard")
    reference.load_state_dict(memory.state_dict())
    before = memory.proxies.clone()
    total, _ = criterion(output, batch)
    features = output.embedding[keep].detach()
    expected = reference.loss(features, batch.pids[keep], batch.camids[keep])
    reference.update(features, batch.pids[keep], batch.camids[keep])
    assert total.item() == pytest.approx(expected.item())
    torch.testing.assert_close(memory.proxies, reference.proxies)
    assert not torch.equal(memory.proxies, before)


def test_criterion_state_dict_carries_the_memory_and_resume_is_exact():
    terms = [{"name": "cluster_contrast", "on": "embedding", "weight": 2.0}, {"name": "trihard"}]
    first = build_criterion(terms, num_classes=1, feat_dim=FEAT_DIM)
    first.cluster_memory().reset(torch.randn(3, FEAT_DIM))
    output, batch = term_case(seed=1, pids=(0, 0, 1, 1, 2, 2, 0, 1))
    first(ReidOutput(embedding=output.embedding.detach(), global_features=[output.embedding.detach()]), batch)
    state = first.state_dict()
    assert state["state.0_cluster_contrast.memory.centroids"].shape == (3, FEAT_DIM)
    second = build_criterion(terms, num_classes=1, feat_dim=FEAT_DIM)
    second.load_state_dict(state)
    again, batch = term_case(seed=2, pids=(0, 0, 1, 1, 2, 2, 0, 1))
    inputs = ReidOutput(embedding=again.embedding.detach(), global_features=[again.embedding.detach()])
    total_first, _ = first(inputs, batch)
    total_second, _ = second(inputs, batch)
    assert total_first.item() == total_second.item()
    assert torch.equal(first.cluster_memory().centroids, second.cluster_memory().centroids)
    assert build_criterion([{"name": "trihard"}], num_classes=1, feat_dim=2).cluster_memory() is None


@pytest.mark.parametrize(
    ("term", "message"),
    [
        ({"name": "cluster_contrast", "params": {"mode": "semi"}}, r"\('cluster_contrast'\): mode: expected one of"),
        ({"name": "cluster_contrast", "params": {"temperature": "hot"}}, "parameter 'temperature' must be a number"),
        ({"name": "cluster_contrast", "params": {"momentum": 2.0}}, r"momentum: expected a number in \[0, 1\]"),
        ({"name": "cluster_contrast", "params": {"camids": 1}}, r"unknown parameters \['camids'\]"),
    ],
)
def test_cluster_contrast_term_config_errors(term, message):
    with pytest.raises(ConfigError, match=message):
        build_criterion([term], num_classes=1, feat_dim=FEAT_DIM)


def test_cluster_contrast_term_refuses_a_list_of_features():
    criterion = build_criterion([{"name": "cluster_contrast", "on": "global"}], num_classes=1, feat_dim=FEAT_DIM)
    criterion.cluster_memory().reset(torch.randn(3, FEAT_DIM))
    output, batch = term_case()
    with pytest.raises(ConfigError, match="'on: global' selects 2 tensors"):
        criterion(output, batch)
