"""DETR's set loss: after the one-to-one matching, a classification loss over every query and box losses
over the matched ones.

    loss = CE(classes, with "no object" weighted ``eos_coef`` = 0.1) + 5·L1(boxes) + 2·(1 − GIoU(boxes))

averaged over the number of objects in the batch, for the last decoder layer and (``aux_outputs``)
every earlier one, each matched on its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.tasks.matcher import HungarianMatcher, box_cxcywh_to_xyxy


class SetCriterion(nn.Module):
    def __init__(
        self,
        num_classes: int,
        matcher: HungarianMatcher | None = None,
        eos_coef: float = 0.1,
        weight_ce: float = 1.0,
        weight_bbox: float = 5.0,
        weight_giou: float = 2.0,
    ) -> None:
        super().__init__()
        self.num_classes, self.matcher = num_classes, matcher or HungarianMatcher()
        self.weights = {"loss_ce": weight_ce, "loss_bbox": weight_bbox, "loss_giou": weight_giou}
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight)

    def layer_losses(
        self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]], num_boxes: float
    ) -> dict[str, Tensor]:
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

    def forward(self, outputs: dict, targets: list[dict[str, Tensor]]) -> tuple[Tensor, dict[str, Tensor]]:
        """(the weighted total, each term of the last layer) for normalised cx, cy, w, h target boxes."""
        num_boxes = max(1.0, float(sum(len(t["labels"]) for t in targets)))
        terms = self.layer_losses(outputs, targets, num_boxes)
        total = sum(self.weights[k] * v for k, v in terms.items())
        for aux in outputs.get("aux_outputs", []):
            total = total + sum(self.weights[k] * v for k, v in self.layer_losses(aux, targets, num_boxes).items())
        return total, terms
