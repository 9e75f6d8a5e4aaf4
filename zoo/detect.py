"""Detection over image files: boxes, labels and scores per file, and a PNG with them drawn (``zoo detect``).

Each file is prepared by the weights' ``transforms()`` (channels, size) and detected; its boxes come back in
the pixels of the file itself (a 128-px copy of a 64-px scene gets boxes twice as large), as DETR's
post-processor scales them to each image's original size. The drawing shows each image at ``scale``× the
model's size with torchvision's ``draw_bounding_boxes``, a caption per box.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from zoo.errors import ZooError


@dataclass
class Detection:
    path: str
    boxes: list[list[float]]  # xyxy, in pixels of the file's own size
    labels: list[str]
    scores: list[float]


def model_and_files(source: Any, paths: list[str | Path], command: str) -> tuple[Any, list[tuple], list[str]]:
    """The model for ``zoo <command>`` (loaded if a name or path; refused in one line if the command does not
    apply to its task) and the image files under ``paths`` read by its ``transforms()``: ``(model, [(path,
    (height, width) of the file, prepared image)...], unreadable files)``. Shared by detect and segment."""
    from zoo.data.images import ImageFiles, find_images, unreadable_error

    if isinstance(source, (str, Path)):
        from zoo.tasks.factory import load

        source = load(source)
    model = source.eval()
    model.description.require(command, model.weights_name or model.hparams.model_name)
    files = find_images(paths)
    if not files:
        raise ZooError(f"no image files under {', '.join(map(str, paths))}; give image files or folders of them")
    transform = model.transforms()
    dataset = ImageFiles(files, lambda image: (image.size[::-1], transform(image)))  # PIL's size is (w, h)
    items = [dataset[i] for i in range(len(files))]
    good = [(files[i], *item) for i, item in items if item is not None]
    bad = [str(files[i]) for i, item in items if item is None]
    if not good:
        raise unreadable_error(bad)
    return model, good, bad


def detect_files(
    source: Any, paths: list[str | Path], *, threshold: float = 0.5, out: str | Path | None = None, scale: int = 4
) -> tuple[list[Detection], list[str]]:
    """(detections per readable file, unreadable files); ``out``: also a PNG grid with the boxes drawn."""

    if not 0.0 <= threshold <= 1.0:
        raise ZooError(f"threshold {threshold} is not a score: give one between 0 and 1 (default 0.5)")
    model, good, bad = model_and_files(source, paths, "detect")
    images = torch.stack([image for _, _, image in good])
    sizes = [size for _, size, _ in good]
    found = model.predict(images, threshold=threshold, sizes=sizes)
    results = [
        Detection(
            str(path),
            [[round(v, 1) for v in box] for box in f["boxes"].tolist()],
            [model.class_names[int(i)] for i in f["labels"]],
            [round(float(s), 4) for s in f["scores"]],
        )
        for (path, _, _), f in zip(good, found)
    ]
    if out is not None:
        height, width = images.shape[-2:]  # the drawing is at the model's size: the boxes scaled to it
        shrink = [(width / w, height / h, width / w, height / h) for h, w in sizes]
        drawn = [
            Detection(r.path, [[v * s for v, s in zip(box, k)] for box in r.boxes], r.labels, r.scores)
            for r, k in zip(results, shrink)
        ]
        draw(images, drawn, out, scale)
    return results, bad


def draw(images: torch.Tensor, results: list[Detection], out: str | Path, scale: int = 4, columns: int = 4) -> Path:
    """The images ``(N, C, H, W)`` in [0, 1], enlarged ``scale``×, with their boxes and captions, as one PNG."""
    import torch.nn.functional as F
    from torchvision.utils import draw_bounding_boxes, make_grid, save_image

    drawn = []
    for image, result in zip(images, results):
        big = F.interpolate(image[None], scale_factor=scale, mode="nearest")[0]
        pixels = (big.expand(3, -1, -1) * 255).round().to(torch.uint8)
        boxes = torch.tensor(result.boxes, dtype=torch.float).reshape(-1, 4) * scale
        captions = [f"{label} {score:.2f}" for label, score in zip(result.labels, result.scores)]
        drawn.append(draw_bounding_boxes(pixels, boxes, captions, colors="yellow", width=2) if len(boxes) else pixels)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(
        make_grid(torch.stack(drawn).float() / 255, nrow=min(columns, len(drawn)), padding=4, pad_value=0.3), path
    )
    return path
