"""DETR's set loss, as the reference implementation (facebookresearch/detr, ``models/detr.py``) computes it.

After the one-to-one matching (:mod:`zoo.tasks.matcher`), each decoder layer gets three *unweighted* terms:

* ``loss_ce``: cross-entropy over every query, the "no object" class weighted ``eos_coef`` (0.1);
* ``loss_bbox``: L1 distance of the matched boxes (normalised cx, cy, w, h), summed, over ``num_boxes``;
* ``loss_giou``: ``1 − GIoU`` of the matched boxes, summed, over ``num_boxes``.

The last layer's terms keep these names; those of the earlier (auxiliary) layers, each matched on its own,
get a suffix ``_0``, ``_1``... ``weight_dict`` gives each name its weight (``loss_ce`` 1, ``loss_bbox`` 5,
``loss_giou`` 2 by default, the same for every layer) and the loss trained is

    total = Σ_name weight_dict[name] · terms[name]

``num_boxes`` is the number of target objects in the batch, averaged over the processes of a distributed
run (``all_reduce`` ÷ world size) and at least 1, so every process divides by the same number.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.errors import ZooError
from zoo.tasks.matcher import HungarianMatcher, box_cxcywh_to_xyxy

TERMS = ("loss_ce", "loss_bbox", "loss_giou")


def average_num_boxes(targets: list[dict[str, Tensor]], device: torch.device | str = "cpu") -> float:
    """The batch's object count averaged over the processes (``all_reduce`` when distributed), at least 1."""
    count = torch.as_tensor([float(sum(len(t["labels"]) for t in targets))], device=device)
    world = 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(count)
        world = torch.distributed.get_world_size()
    return torch.clamp(count / world, min=1).item()


def make_weight_dict(
    aux_layers: int, ce_weight: float = 1.0, bbox_weight: float = 5.0, giou_weight: float = 2.0
) -> dict[str, float]:
    """The weight of every term: the last layer's and, with suffixes ``_0``..., each auxiliary layer's."""
    weights = {"loss_ce": ce_weight, "loss_bbox": bbox_weight, "loss_giou": giou_weight}
    for name, value in weights.items():
        if not value >= 0:
            raise ZooError(f"the weight of {name} is {value}; loss weights must be 0 or more")
    return {**weights, **{f"{k}_{i}": v for i in range(aux_layers) for k, v in weights.items()}}


class SetCriterion(nn.Module):
    """``forward(outputs, targets)`` → the unweighted terms of every decoder layer; ``total(terms)`` → the loss.

    Args:
        num_classes: object classes; the class index ``num_classes`` is "no object".
        matcher: the Hungarian matcher (its costs), a default one if None.
        eos_coef: the cross-entropy weight of the "no object" class.
        weight_dict: each term's weight (:func:`make_weight_dict`); terms it does not name count 0.
    """

    def __init__(
        self,
        num_classes: int,
        matcher: HungarianMatcher | None = None,
        eos_coef: float = 0.1,
        weight_dict: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.num_classes, self.matcher = num_classes, matcher or HungarianMatcher()
        self.weight_dict = dict(weight_dict) if weight_dict is not None else make_weight_dict(aux_layers=0)
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight)

    def layer_losses(
        self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]], num_boxes: float
    ) -> dict[str, Tensor]:
        """The three unweighted terms of one decoder layer's ``pred_logits`` / ``pred_boxes``, matched anew."""
        from torchvision.ops import generalized_box_iou

        matches = self.matcher(outputs, targets)
        logits = outputs["pred_logits"]
        classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.long, device=logits.device)
        batch = torch.cat([torch.full_like(q, i) for i, (q, _) in enumerate(matches)]).to(logits.device)
        query = torch.cat([q for q, _ in matches]).to(logits.device)
        classes[batch, query] = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, matches)]).to(logits.device)
        loss_ce = F.cross_entropy(logits.transpose(1, 2), classes, self.empty_weight)
        predicted = outputs["pred_boxes"][batch, query]
        wanted = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, matches)]).to(predicted.device)
        loss_bbox = F.l1_loss(predicted, wanted, reduction="none").sum() / num_boxes
        giou = torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(predicted), box_cxcywh_to_xyxy(wanted)))
        loss_giou = (1 - giou).sum() / num_boxes
        return {"loss_ce": loss_ce, "loss_bbox": loss_bbox, "loss_giou": loss_giou}

    def forward(self, outputs: dict, targets: list[dict[str, Tensor]], synchronise: bool = True) -> dict[str, Tensor]:
        """Unweighted terms: ``loss_ce``, ``loss_bbox``, ``loss_giou`` of the last layer, then ``loss_ce_0``...
        of each auxiliary layer, for targets with normalised cx, cy, w, h boxes.

        ``synchronise=False``: the boxes are counted on this process alone, with no collective call: for
        evaluation, where processes may hold different numbers of batches (every image scored once, none
        repeated to even them out) and a per-step ``all_reduce`` would wait for a batch that never comes."""
        if synchronise:
            num_boxes = average_num_boxes(targets, outputs["pred_logits"].device)
        else:
            num_boxes = max(1.0, float(sum(len(t["labels"]) for t in targets)))
        last = {k: v for k, v in outputs.items() if k != "aux_outputs"}
        terms = self.layer_losses(last, targets, num_boxes)
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            terms.update({f"{k}_{i}": v for k, v in self.layer_losses(aux, targets, num_boxes).items()})
        return terms

    def total(self, terms: dict[str, Tensor]) -> Tensor:
        """The loss trained: ``Σ weight_dict[name] · terms[name]`` over the terms ``weight_dict`` names."""
        return sum(terms[k] * self.weight_dict[k] for k in terms if k in self.weight_dict)
