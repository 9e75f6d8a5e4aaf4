"""DETR's matcher and set loss against independent computations: box conversions against boxes worked by
hand, the Hungarian matcher against brute force over every assignment, the per-layer terms and their
weights against the loss as it was computed before it was split into terms, and ``num_boxes`` averaged
over two processes."""

from __future__ import annotations

import itertools
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import zoo
from zoo.errors import ZooError
from zoo.tasks.matcher import HungarianMatcher, box_cxcywh_to_xyxy, box_xyxy_to_cxcywh
from zoo.tasks.set_criterion import SetCriterion, average_num_boxes, make_weight_dict


def _outputs(batch: int = 3, queries: int = 6, classes: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "pred_logits": torch.randn(batch, queries, classes + 1, generator=g),
        "pred_boxes": torch.rand(batch, queries, 4, generator=g) * 0.5 + 0.25,
    }


def _targets(counts=(2, 0, 3), classes: int = 4, seed: int = 1) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [
        {"labels": torch.randint(classes, (k,), generator=g), "boxes": torch.rand(k, 4, generator=g) * 0.4 + 0.3}
        for k in counts
    ]


def _giou(a: list[float], b: list[float]) -> float:
    """Generalised IoU of two xyxy boxes, written out (Rezatofighi et al. 2019), not torchvision's."""
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    hull = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    return inter / union - (hull - union) / hull


def _xyxy(box: list[float]) -> list[float]:
    cx, cy, w, h = box
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def _pair_cost(prob: list[float], box: list[float], label: int, target: list[float], costs) -> float:
    l1 = sum(abs(p - t) for p, t in zip(box, target))
    return -costs[0] * prob[label] + costs[1] * l1 - costs[2] * _giou(_xyxy(box), _xyxy(target))


def _brute_force(outputs: dict, target: dict, image: int, costs=(1.0, 5.0, 2.0)) -> tuple[float, list[int]]:
    """(least total cost, the queries given to objects 0, 1...) over every one-to-one assignment."""
    probs = outputs["pred_logits"][image].softmax(-1).tolist()
    boxes = outputs["pred_boxes"][image].tolist()
    labels, wanted = target["labels"].tolist(), target["boxes"].tolist()
    best = (float("inf"), [])
    for queries in itertools.permutations(range(len(boxes)), len(labels)):
        cost = sum(_pair_cost(probs[q], boxes[q], labels[j], wanted[j], costs) for j, q in enumerate(queries))
        best = min(best, (cost, list(queries)))
    return best


# ---- boxes ---------------------------------------------------------------------------------------------
def test_box_conversions_against_boxes_worked_by_hand() -> None:
    # centre (5, 4), 6 wide, 2 high → x from 2 to 8, y from 3 to 5
    assert box_cxcywh_to_xyxy(torch.tensor([5.0, 4.0, 6.0, 2.0])).tolist() == [2.0, 3.0, 8.0, 5.0]
    # x from 1 to 5, y from 2 to 10 → centre (3, 6), 4 wide, 8 high
    assert box_xyxy_to_cxcywh(torch.tensor([1.0, 2.0, 5.0, 10.0])).tolist() == [3.0, 6.0, 4.0, 8.0]
    batch = torch.tensor([[[0.5, 0.5, 1.0, 1.0]], [[0.25, 0.75, 0.5, 0.25]]])  # (2, 1, 4): leading dims kept
    assert box_cxcywh_to_xyxy(batch).tolist() == [[[0.0, 0.0, 1.0, 1.0]], [[0.0, 0.625, 0.5, 0.875]]]
    assert _giou([0, 0, 2, 2], [1, 1, 3, 3]) == pytest.approx(1 / 7 - 2 / 9)  # the helper itself, by hand


def test_pixel_boxes_to_normalised_and_back_against_boxes_worked_by_hand() -> None:
    """A 128-wide, 64-high image: pixels (32, 24)-(96, 40) are centre (0.5, 0.5), 0.5 wide, 0.25 high."""
    model = zoo.create("detr_lite")
    target = {"labels": torch.tensor([2]), "boxes": torch.tensor([[32.0, 24.0, 96.0, 40.0]])}
    assert model._normalised([target], (64, 128))[0]["boxes"].tolist() == [[0.5, 0.5, 0.5, 0.25]]
    logits = torch.full((1, 1, 11), -10.0)
    logits[0, 0, 2] = 10.0
    outputs = {"pred_logits": logits, "pred_boxes": torch.tensor([[[0.5, 0.5, 0.5, 0.25]]])}
    found = model.detections(outputs, (64, 128), threshold=0.5)[0]
    assert found["boxes"].tolist() == [[32.0, 24.0, 96.0, 40.0]] and found["labels"].tolist() == [2]
    two = model.detections({k: v.expand(2, -1, -1) for k, v in outputs.items()}, [(64, 128), (32, 32)], 0.5)
    assert two[1]["boxes"].tolist() == [[8.0, 12.0, 24.0, 20.0]]  # each image at its own size
    with pytest.raises(ZooError, match="3 image sizes for 2 images"):
        model.detections({k: v.expand(2, -1, -1) for k, v in outputs.items()}, [(64, 64)] * 3)


# ---- the matcher ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("costs", [(1.0, 5.0, 2.0), (0.0, 1.0, 0.0), (2.0, 0.0, 1.0)])
def test_the_matcher_finds_the_least_cost_of_all_assignments(costs) -> None:
    """Small random cases (up to 5 queries and objects), against every permutation."""
    matcher = HungarianMatcher(*costs)
    for seed in range(12):
        g = torch.Generator().manual_seed(seed)
        queries = int(torch.randint(1, 6, (1,), generator=g))
        counts = [int(torch.randint(0, queries + 1, (1,), generator=g)) for _ in range(2)]
        outputs, targets = _outputs(2, queries, 3, seed), _targets(counts, 3, seed + 100)
        for image, (rows, cols) in enumerate(matcher(outputs, targets)):
            best, _ = _brute_force(outputs, targets[image], image, costs)
            assert len(set(rows.tolist())) == len(rows) == counts[image] and sorted(cols.tolist()) == list(
                range(counts[image])
            )
            probs = outputs["pred_logits"][image].softmax(-1).tolist()
            boxes, target = outputs["pred_boxes"][image].tolist(), targets[image]
            found = sum(
                _pair_cost(probs[q], boxes[q], int(target["labels"][j]), target["boxes"][j].tolist(), costs)
                for q, j in zip(rows.tolist(), cols.tolist())
            )
            assert found == pytest.approx(best, abs=1e-4), (seed, image)
    with pytest.raises(ZooError, match="must be 0 or more and not all 0"):
        HungarianMatcher(0.0, 0.0, 0.0)


# ---- the matcher and the loss, as sets --------------------------------------------------------------------------------
def test_batched_matching_equals_per_image_matching_and_is_one_to_one() -> None:
    outputs, targets = _outputs(), _targets()
    matcher = HungarianMatcher()
    batched = matcher(outputs, targets)
    for image, (queries, objects) in enumerate(batched):
        alone = matcher({k: v[image : image + 1] for k, v in outputs.items()}, [targets[image]])[0]
        assert torch.equal(queries, alone[0]) and torch.equal(objects, alone[1])
        assert len(set(queries.tolist())) == len(queries) == len(targets[image]["labels"])
    assert [len(q) for q, _ in batched] == [2, 0, 3]  # an image without objects matches nothing


def test_a_perfect_prediction_has_no_box_loss_and_empty_targets_only_say_no_object() -> None:
    targets = _targets(counts=(2, 3))
    outputs = _outputs(batch=2)
    for image, target in enumerate(targets):  # the first queries predict the objects exactly
        k = len(target["labels"])
        outputs["pred_boxes"][image, :k] = target["boxes"]
        outputs["pred_logits"][image, :k] = -20.0
        outputs["pred_logits"][image, torch.arange(k), target["labels"]] = 20.0
        outputs["pred_logits"][image, k:] = -20.0
        outputs["pred_logits"][image, k:, -1] = 20.0
    terms = SetCriterion(4)(outputs, targets)
    assert terms["loss_bbox"] < 1e-6 and terms["loss_giou"] < 1e-6 and terms["loss_ce"] < 1e-6
    empty = SetCriterion(4)(
        _outputs(batch=1), [{"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}]
    )
    assert empty["loss_bbox"] == 0 and empty["loss_giou"] == 0 and empty["loss_ce"] > 0


def test_permuting_the_queries_leaves_the_loss_unchanged() -> None:
    outputs, targets = _outputs(), _targets()
    outputs["aux_outputs"] = [_outputs(seed=5)]
    order = torch.randperm(6, generator=torch.Generator().manual_seed(3))
    permuted = {k: v[:, order] for k, v in outputs.items() if k != "aux_outputs"}
    permuted["aux_outputs"] = [{k: v[:, order] for k, v in outputs["aux_outputs"][0].items()}]
    criterion = SetCriterion(4, weight_dict=make_weight_dict(aux_layers=1))
    before, after = criterion(outputs, targets), criterion(permuted, targets)
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before) and len(before) == 6


# ---- the loss terms ------------------------------------------------------------------------------------
def test_every_decoder_layer_has_its_own_unweighted_terms() -> None:
    outputs, targets = _outputs(), _targets()
    outputs["aux_outputs"] = [_outputs(seed=5), _outputs(seed=6)]
    criterion = SetCriterion(4, weight_dict=make_weight_dict(aux_layers=2))
    terms = criterion(outputs, targets)
    names = ("loss_ce", "loss_bbox", "loss_giou")
    assert list(terms) == [*names, *(f"{n}_0" for n in names), *(f"{n}_1" for n in names)]
    for i, aux in enumerate(outputs["aux_outputs"]):  # each layer matched on its own: as if it were the last
        alone = criterion(aux, targets)
        assert all(torch.equal(terms[f"{n}_{i}"], alone[n]) for n in names), i
    assert criterion.weight_dict == {f"{n}{s}": w for s in ("", "_0", "_1") for n, w in zip(names, (1, 5, 2))}
    weighted = SetCriterion(4, weight_dict=make_weight_dict(2, ce_weight=0.5, bbox_weight=0.0, giou_weight=3.0))
    expected = sum(0.5 * terms[f"loss_ce{s}"] + 3.0 * terms[f"loss_giou{s}"] for s in ("", "_0", "_1"))
    assert torch.allclose(weighted.total(weighted(outputs, targets)), expected)
    with pytest.raises(ZooError, match="the weight of loss_bbox is -1"):
        make_weight_dict(2, bbox_weight=-1)


def test_the_default_total_is_the_loss_as_it_was_computed_by_hand() -> None:
    """CE (no object weighted 0.1) + 5·L1 + 2·(1 − GIoU), per layer, matched by brute force, over the objects."""
    import math

    outputs, targets = _outputs(queries=5), _targets()
    outputs["aux_outputs"] = [_outputs(queries=5, seed=7), _outputs(queries=5, seed=8)]
    model = zoo.create("detr_lite", num_classes=4)
    by_hand = 0.0
    for layer in [outputs, *outputs["aux_outputs"]]:
        ce_sum = ce_weights = l1 = giou = 0.0
        for image, target in enumerate(targets):
            _, queries = _brute_force(layer, target, image)
            classes = [4] * 5
            for j, q in enumerate(queries):
                classes[q] = int(target["labels"][j])
                box, wanted = layer["pred_boxes"][image, q].tolist(), target["boxes"][j].tolist()
                l1 += sum(abs(a - b) for a, b in zip(box, wanted))
                giou += 1 - _giou(_xyxy(box), _xyxy(wanted))
            for q, c in enumerate(classes):
                weight = 0.1 if c == 4 else 1.0
                ce_sum += -weight * math.log(layer["pred_logits"][image, q].softmax(-1)[c].item())
                ce_weights += weight
        objects = sum(len(t["labels"]) for t in targets)
        by_hand += ce_sum / ce_weights + 5 * l1 / objects + 2 * giou / objects
    total = model.criterion.total(model.criterion(outputs, targets))
    assert total.item() == pytest.approx(by_hand, rel=1e-5)
    assert len(model.criterion.weight_dict) == 3 * len(model.net.decoder)  # detr_lite: 2 auxiliary layers


def test_the_task_takes_loss_weights_and_matcher_costs() -> None:
    model = zoo.create("detr_lite", ce_weight=2.0, bbox_weight=1.0, giou_weight=0.0, cost_bbox=3.0)
    assert model.criterion.weight_dict["loss_ce_1"] == 2.0 and model.criterion.weight_dict["loss_giou"] == 0.0
    assert model.criterion.matcher.cost_bbox == 3.0 and model.criterion.matcher.cost_class == 1.0
    model.reset_classifier(3)  # a new head keeps the run's weights and costs
    assert model.criterion.weight_dict["loss_ce"] == 2.0 and model.criterion.matcher.cost_bbox == 3.0
    assert model.criterion.empty_weight.shape == (4,)


# ---- num_boxes over processes --------------------------------------------------------------------------
CASES = [(3, 0), (0, 0), (5, 2)]  # objects on process 0, on process 1


def _num_boxes_worker(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        found = []
        for case in CASES:
            target = _targets(counts=(case[rank],), seed=rank)
            outputs = _outputs(batch=1, queries=6, seed=rank)
            terms = SetCriterion(4)(outputs, target)
            alone = SetCriterion(4).layer_losses(outputs, target, 1.0)  # divided by 1: the sum
            found.append((average_num_boxes(target), float(terms["loss_bbox"]), float(alone["loss_bbox"])))
        results[rank] = found
    finally:
        dist.destroy_process_group()


def test_num_boxes_is_averaged_over_processes() -> None:
    """As the reference: all_reduce, ÷ world size, at least 1; each process divides its sums by it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_num_boxes_worker, args=(port, results), nprocs=2)
    for rank in (0, 1):
        for (a, b), (num_boxes, loss_bbox, summed) in zip(CASES, results[rank]):
            assert num_boxes == max(1.0, (a + b) / 2), (rank, a, b)
            assert loss_bbox == pytest.approx(summed / num_boxes)
    assert average_num_boxes(_targets(counts=(2, 0, 3))) == 5.0  # no process group: the batch's count


def test_the_recipe_sets_the_loss_weights_and_matcher_costs() -> None:
    import yaml

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "detr_lite_fmnist_scenes.yaml"
    args = yaml.safe_load(recipe.read_text())["model"]["init_args"]
    names = ("ce_weight", "bbox_weight", "giou_weight", "cost_class", "cost_bbox", "cost_giou")
    assert {k: args[k] for k in names} == dict(zip(names, (1.0, 5.0, 2.0, 1.0, 5.0, 2.0)))  # DETR's values
    model = zoo.create("detr_lite", **{k: args[k] for k in names})
    assert model.criterion.weight_dict == make_weight_dict(2) and model.criterion.matcher.cost_giou == 2.0
