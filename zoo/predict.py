"""Predictions over image files and folders, at the speed of the model: ``zoo predict`` and :func:`predict_files`.

Files are decoded in DataLoader worker processes and prepared by the weights' own ``transforms()``; the
model (or an exported ONNX file, run by onnxruntime) sees whole batches. Unreadable files are skipped and
reported, never fatal.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zoo.data.images import ImageFiles, collate_readable, find_images
from zoo.errors import ZooError


@dataclass
class Prediction:
    path: str
    labels: list[str]
    probs: list[float]


@dataclass
class Run:
    predictions: list[Prediction] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def default_workers() -> int:
    return min(4, max(0, (os.cpu_count() or 1) - 1))


def iter_predictions(
    model: Any,
    paths: Sequence[str | Path],
    *,
    top_k: int = 1,
    batch_size: int = 64,
    num_workers: int | None = None,
    onnx: str | Path | None = None,
    progress: bool = False,
    unreadable: list[str] | None = None,
) -> Iterator[Prediction]:
    """Top-k predictions for every image under ``paths``, in file order; failures go to ``unreadable``."""
    from torch.utils.data import DataLoader

    files = find_images(paths)
    if not files:
        raise ZooError(f"no image files under {', '.join(map(str, paths))}; give image files or folders of them")
    workers = default_workers() if num_workers is None else num_workers
    loader = DataLoader(
        ImageFiles(files, model.transforms()),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate_readable,
        persistent_workers=False,
    )
    if onnx is not None:
        from zoo.exporting import check_onnx_for, onnx_session

        check_onnx_for(onnx, model)  # another model's file would answer under this model's name
        session = onnx_session(onnx)
        takes_bytes = session.get_inputs()[0].type == "tensor(uint8)"  # exported with --input-dtype uint8

        def forward(x):  # noqa: E306
            if takes_bytes:
                x = x.mul(255).round().to(torch.uint8) if x.is_floating_point() else x.to(torch.uint8)
            return torch.from_numpy(session.run(None, {"pixels": x.numpy()})[0])
    else:
        model.eval()

        def forward(x):
            return model(x.to(model.device))

    k = min(top_k, len(model.class_names))
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        task = bar.add_task("predicting", total=len(files))
        bar.start()
    try:
        with torch.inference_mode():
            for indices, images, bad in loader:
                if unreadable is not None:
                    unreadable += [str(files[i]) for i in bad]
                if images is not None:
                    top = forward(images).softmax(dim=-1).topk(k, dim=1)
                    for i, values, labels in zip(indices, top.values.tolist(), top.indices.tolist()):
                        yield Prediction(str(files[i]), [model.class_names[j] for j in labels], values)
                if bar is not None:
                    bar.advance(task, len(indices) + len(bad))
    finally:
        if bar is not None:
            bar.stop()


def predict_files(source: Any, paths: Sequence[str | Path], **options: Any) -> Run:
    """:func:`iter_predictions` for weights (anything ``zoo.load`` takes) or a loaded model, collected."""
    if isinstance(source, (str, Path)):
        from zoo.tasks.factory import load

        source = load(source)
    run = Run()
    run.predictions = list(iter_predictions(source, paths, unreadable=run.unreadable, **options))
    return run
