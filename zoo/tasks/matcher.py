"""The Hungarian matcher of DETR: each ground-truth object gets exactly one prediction.

For one image, the cost of giving object ``j`` to query ``i`` is

    cost[i, j] = w_class · (−p_i(class_j)) + w_L1 · ‖box_i − box_j‖₁ + w_GIoU · (−GIoU(box_i, box_j))

(boxes as normalised cx, cy, w, h; GIoU from ``torchvision.ops.generalized_box_iou``), and
``scipy.optimize.linear_sum_assignment`` finds the one-to-one assignment of least total cost. The
queries left over are trained to say "no object".
"""

from __future__ import annotations

import torch
from torch import Tensor

from zoo.errors import ZooError


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """Centre x, centre y, width, height → left, top, right, bottom (any leading dimensions)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """Left, top, right, bottom → centre x, centre y, width, height (any leading dimensions)."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


class HungarianMatcher(torch.nn.Module):
    """``forward(outputs, targets)`` → per image ``(query indices, target indices)``, each ``(k,)`` int64.

    ``targets``: per image ``{"labels": (k,), "boxes": (k, 4) normalised cx, cy, w, h}``. The costs are
    the weights of the three parts of the cost (the reference's ``set_cost_class``, ``_bbox``, ``_giou``).
    """

    def __init__(self, cost_class: float = 1.0, cost_bbox: float = 5.0, cost_giou: float = 2.0) -> None:
        super().__init__()
        costs = {"cost_class": cost_class, "cost_bbox": cost_bbox, "cost_giou": cost_giou}
        if any(not v >= 0 for v in costs.values()) or not any(costs.values()):
            raise ZooError(f"matcher costs {costs} must be 0 or more and not all 0")
        self.cost_class, self.cost_bbox, self.cost_giou = cost_class, cost_bbox, cost_giou

    @torch.no_grad()
    def forward(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]]) -> list[tuple[Tensor, Tensor]]:
        from scipy.optimize import linear_sum_assignment
        from torchvision.ops import generalized_box_iou

        n, queries = outputs["pred_logits"].shape[:2]
        probs = outputs["pred_logits"].flatten(0, 1).softmax(-1)  # (N·Q, classes + 1)
        boxes = outputs["pred_boxes"].flatten(0, 1)
        labels = torch.cat([t["labels"] for t in targets]).to(probs.device)
        wanted = torch.cat([t["boxes"] for t in targets]).to(boxes.device)
        sizes = [len(t["labels"]) for t in targets]
        if not sum(sizes):
            empty = torch.zeros(0, dtype=torch.long)
            return [(empty, empty) for _ in targets]
        # one cost matrix for the whole batch (every query against every object), one copy to the CPU,
        # then each image's block is assigned on its own
        cost = (
            -self.cost_class * probs[:, labels]
            + self.cost_bbox * torch.cdist(boxes, wanted, p=1)
            - self.cost_giou * generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(wanted))
        )
        blocks = cost.view(n, queries, -1).float().cpu().split(sizes, dim=-1)
        matches = []
        for image, block in enumerate(blocks):
            rows, cols = linear_sum_assignment(block[image].numpy()) if sizes[image] else ([], [])
            matches.append((torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)))
        return matches
