"""The detection fine-tuning example (docs/detection.md): the shipped detector on noisy scenes, zero-shot and fine-tuned on a few hundred.

Scenes of Fashion-MNIST garments (:class:`~zoo.data.scenes.FashionMNISTScenes`, 64 px) with Gaussian pixel
noise σ = 0.15 (on [0, 1] pixels), written as COCO folders (:func:`~zoo.data.coco.write_coco`): ``train``
scenes drawn from the training split (10% of them validate), ``test`` scenes from the test split. The shipped
``detr_lite.fmnist_scenes`` is measured on the test folder as it is (zero-shot), then fine-tuned on the
train folder with ``zoo.finetune`` (defaults unless ``--epochs``/``--lr``) and measured again.

    OMP_NUM_THREADS=1 python experiments/finetune_detection_noise.py --train 300 --test 300 --epochs 10

Writes ``docs/finetune_detection_noise.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import torch

import zoo
from zoo.data.coco import write_coco
from zoo.data.fashion_mnist import CLASS_NAMES
from zoo.data.scenes import FashionMNISTScenes
from zoo.evaluate import evaluate

DOCS = Path(__file__).resolve().parents[1] / "docs"
SIGMA = 0.15


def noisy_scenes(split: str, count: int, seed: int) -> object:
    scenes = FashionMNISTScenes(train_scenes=count, val_scenes=count, test_scenes=count, augment=False, seed=seed)
    dataset = scenes.render(split)
    generator = torch.Generator().manual_seed(seed + 17)
    noise = SIGMA * torch.randn(dataset.images.shape, generator=generator)
    dataset.images = (dataset.images.float() / 255 + noise).clamp(0, 1).mul(255).round().to(torch.uint8)
    return dataset


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=300, help="noisy training scenes (10%% of them validate)")
    parser.add_argument("--test", type=int, default=300, help="noisy test scenes")
    parser.add_argument("--epochs", type=int, default=None, help="default: zoo.finetune's step budget")
    parser.add_argument("--lr", default="auto")
    parser.add_argument("--output", type=Path, default=DOCS / "finetune_detection_noise.json")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as scratch:
        train = write_coco(noisy_scenes("train", args.train, 0), Path(scratch) / "train", CLASS_NAMES).parent
        test = write_coco(noisy_scenes("test", args.test, 0), Path(scratch) / "test", CLASS_NAMES).parent
        shipped = zoo.load("detr_lite.fmnist_scenes")
        zero_shot = evaluate(shipped, data=str(test))
        print(f"zero-shot on {args.test} noisy test scenes: mAP@0.5 {zero_shot['test_map_50']:.3f}", flush=True)
        started = time.perf_counter()
        lr = args.lr if args.lr == "auto" else float(args.lr)
        tuned = zoo.finetune("detr_lite.fmnist_scenes", str(train), max_epochs=args.epochs, lr=lr)
        wall = time.perf_counter() - started
        after = evaluate(tuned, data=str(test))
        print(f"fine-tuned on {args.train} noisy scenes: mAP@0.5 {after['test_map_50']:.3f} ({wall:.0f} s)")
    record = {
        "sigma": SIGMA,
        "train_scenes": args.train,
        "test_scenes": args.test,
        "zero_shot": {k: zero_shot[k] for k in ("test_map", "test_map_50", "test_map_75")},
        "finetuned": {k: after[k] for k in ("test_map", "test_map_50", "test_map_75")},
        "finetune_plan": tuned.card_metrics.get("finetune_plan"),
        "epochs_run": tuned.card_metrics.get("epochs"),
        "best_epoch": tuned.card_metrics.get("best_epoch"),
        "val_map": tuned.card_metrics.get("val_map"),
        "wall_s": round(wall, 1),
        "hardware": tuned.card_metrics.get("hardware"),
    }
    args.output.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
