"""Detection data: multi-object Fashion-MNIST scenes, and COCO-format folders of your own.

A *scene* is a black 64×64 canvas with 1 to 4 real Fashion-MNIST garments, each scaled to a random
side of 14 to 28 pixels and pasted at a random position whose box overlaps every earlier box by
IoU ≤ 0.2 (positions are drawn again until one does; a later garment lies on top). Its box is the
tight box of the garment's non-zero pixels, so boxes are exact. The scenes are fixed by the seed:
training scenes use the training images, validation scenes a held-out 5,000 of them, and the 1,000
test scenes the test images, the same on every machine.

Both datamodules yield ``(images (N, C, H, W) uint8, targets)``, each target a dict of ``boxes``
``(k, 4)`` float ``xyxy`` in pixels and ``labels`` ``(k,)`` int64: torchvision's detection format.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from zoo.data.fashion_mnist import CLASS_NAMES
from zoo.errors import DatasetNotFoundError, InvalidValueError, ZooError


def make_scene(
    garments: Tensor, labels: Tensor, generator: torch.Generator, size: int, max_objects: int, scales: tuple[int, int]
) -> tuple[Tensor, Tensor, Tensor]:
    """One scene from a pool of ``garments`` (N, 28, 28) uint8: ``(image (1, size, size), boxes, labels)``."""
    canvas = torch.zeros(size, size, dtype=torch.uint8)
    count = int(torch.randint(1, max_objects + 1, (1,), generator=generator))
    boxes, classes = [], []
    for _ in range(count):
        for _attempt in range(100):  # drawn again until it overlaps the earlier boxes little
            index = int(torch.randint(len(garments), (1,), generator=generator))
            side = int(torch.randint(scales[0], scales[1] + 1, (1,), generator=generator))
            x0 = int(torch.randint(0, size - side + 1, (1,), generator=generator))
            y0 = int(torch.randint(0, size - side + 1, (1,), generator=generator))
            patch = F.interpolate(
                garments[index][None, None].float(), size=(side, side), mode="bilinear", antialias=True
            )
            patch = patch[0, 0].round().clamp(0, 255).to(torch.uint8)
            rows, cols = (patch > 20).any(1).nonzero().flatten(), (patch > 20).any(0).nonzero().flatten()
            if not len(rows):
                continue
            box = torch.tensor([x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1], dtype=torch.float)
            if boxes and float(_iou(box, torch.stack(boxes)).max()) > 0.2:
                continue
            region = canvas[y0 : y0 + side, x0 : x0 + side]
            canvas[y0 : y0 + side, x0 : x0 + side] = torch.where(patch > 0, patch, region)  # the later one on top
            boxes.append(box)
            classes.append(int(labels[index]))
            break
    return canvas[None], torch.stack(boxes), torch.tensor(classes, dtype=torch.long)


def _iou(box: Tensor, others: Tensor) -> Tensor:
    low, high = torch.maximum(box[:2], others[:, :2]), torch.minimum(box[2:], others[:, 2:])
    inter = (high - low).clamp_min(0).prod(1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(others) - inter)


def collate_detection(batch: Sequence[tuple[Tensor, dict[str, Tensor]]]) -> tuple[Tensor, list[dict[str, Tensor]]]:
    """Images of one size stacked; targets kept as a list (each image has its own number of boxes)."""
    return torch.stack([image for image, _ in batch]), [target for _, target in batch]


class SceneDataset(Dataset):
    """Pre-rendered scenes: ``(image uint8 (1, H, W), {"boxes", "labels"})``."""

    def __init__(self, images: Tensor, targets: list[dict[str, Tensor]], flip: bool = False) -> None:
        self.images, self.targets, self.flip = images, targets, flip

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        image, target = self.images[index], self.targets[index]
        if self.flip and torch.rand(()) < 0.5:  # a horizontal flip, boxes mirrored with it
            width = image.shape[-1]
            image = image.flip(-1)
            boxes = target["boxes"].clone()
            boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
            target = {**target, "boxes": boxes}
        return image, target


class FashionMNISTScenes(L.LightningDataModule):
    """Multi-object Fashion-MNIST scenes for detection (see the module doc).

    Args:
        size: canvas side in pixels. max_objects: garments per scene (1 to this many).
        min_scale, max_scale: garment side range in pixels. train_scenes/val_scenes/test_scenes: split sizes.
        seed: the scenes' seed. batch_size, num_workers: DataLoader settings. augment: horizontal flips.
        fresh_train_scenes: draw new training scenes every epoch (epoch ``e`` from its own seed, so a resumed
            run sees the same ones) instead of the same ``train_scenes`` each time: more garments, positions
            and neighbours for the same compute. Needs ``trainer.reload_dataloaders_every_n_epochs=1``.
        root: folder of the Fashion-MNIST IDX files (as :class:`~zoo.data.FashionMNISTDataModule`).
    """

    dataset_name = "fashion_mnist_scenes"
    class_names = list(CLASS_NAMES)
    num_classes = 10
    in_chans = 1

    def __init__(
        self,
        size: int = 64,
        max_objects: int = 4,
        min_scale: int = 14,
        max_scale: int = 28,
        train_scenes: int = 10_000,
        val_scenes: int = 1_000,
        test_scenes: int = 1_000,
        seed: int = 0,
        batch_size: int = 32,
        num_workers: int = 0,
        augment: bool = True,
        fresh_train_scenes: bool = False,
        root: str | None = None,
    ) -> None:
        super().__init__()
        if not 0 < min_scale <= max_scale <= size:
            raise InvalidValueError(f"need 0 < min_scale ≤ max_scale ≤ size, got {min_scale}, {max_scale}, {size}")
        if max_objects < 1:
            raise InvalidValueError(f"max_objects must be ≥ 1, got {max_objects}")
        self.save_hyperparameters()
        self.datasets: dict[str, SceneDataset] = {}

    def render(self, split: str, epoch: int = 0) -> SceneDataset:
        from zoo.data.fashion_mnist import load_split

        hp = self.hparams
        images, labels = load_split("test" if split == "test" else "train", hp.root, download=False)
        if split != "test":  # the last 5,000 training images are the validation scenes' pool
            order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(hp.seed))
            keep = order[:-5000] if split == "train" else order[-5000:]
            images, labels = images[keep], labels[keep]
        count = {"train": hp.train_scenes, "val": hp.val_scenes, "test": hp.test_scenes}[split]
        offset = {"train": 0, "val": 1, "test": 2}[split]
        generator = torch.Generator().manual_seed(hp.seed * 3 + offset + 1_000_003 * epoch)
        scenes = [
            make_scene(images, labels, generator, hp.size, hp.max_objects, (hp.min_scale, hp.max_scale))
            for _ in range(count)
        ]
        stacked = torch.stack([image for image, _, _ in scenes])
        targets = [{"boxes": boxes, "labels": classes} for _, boxes, classes in scenes]
        return SceneDataset(stacked, targets, flip=hp.augment and split == "train")

    def setup(self, stage: str | None = None) -> None:
        for split in ("train", "val", "test"):
            if split not in self.datasets:
                self.datasets[split] = self.render(split)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            num_workers=self.hparams.num_workers,
            collate_fn=collate_detection,
        )

    def train_dataloader(self) -> DataLoader:
        if self.hparams.fresh_train_scenes and self.trainer is not None:
            if self.trainer.reload_dataloaders_every_n_epochs != 1:
                raise InvalidValueError(
                    "fresh_train_scenes needs a new training loader every epoch: "
                    "add --trainer.reload_dataloaders_every_n_epochs 1"
                )
            if self.trainer.current_epoch:  # epoch 0 trains on the scenes setup() rendered
                self.datasets["train"] = self.render("train", self.trainer.current_epoch)
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)


def coco_files(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(annotation file, image folder)`` of a COCO folder (``annotations.json`` + ``images/``, or the
    images beside it) or of an annotation file (its images in ``images/`` beside it, or beside it)."""
    path = Path(path).expanduser()
    annotations = path / "annotations.json" if path.is_dir() else path
    if not annotations.is_file():
        raise DatasetNotFoundError(
            f"no COCO annotations at {annotations}: give an annotations.json or a folder holding one"
        )
    images = annotations.parent / "images"
    return annotations, images if images.is_dir() else annotations.parent


class CocoDetection(L.LightningDataModule):
    """Your detection data in COCO format: an ``annotations.json`` (``images``, ``annotations`` with
    ``bbox`` ``[x, y, w, h]`` pixels, ``categories``) and its image folder, for each of train and val.
    ``train_json``/``val_json`` may be the folder that holds ``annotations.json`` (and ``images/``); an
    image folder left out is found as :func:`coco_files` says. Without ``val_json``, ``val_fraction`` of the
    training images (drawn with ``split_seed``) are held out for validation and the card's test numbers.

    Images are converted to ``in_chans`` channels and resized to ``size × size`` (boxes scaled alike).
    Categories become classes 0..K-1 in the order of their ids; their names are the class names.
    """

    dataset_name = "coco_json"

    def __init__(
        self,
        train_json: str,
        train_images: str | None = None,
        val_json: str | None = None,
        val_images: str | None = None,
        size: int = 64,
        in_chans: int = 1,
        batch_size: int = 16,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        split_seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0 <= val_fraction < 1:
            raise InvalidValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        # the image size and channels are the model's too: kept out of hparams, which Lightning's loggers
        # merge with the model's (where ``in_chans=None`` means "the architecture's") and refuse to differ
        self.save_hyperparameters(ignore=["size", "in_chans"])
        self.size, self.in_chans = size, in_chans
        self.files = {"train": coco_files(train_json)}
        self.files["val"] = coco_files(val_json) if val_json else self.files["train"]
        for split, folder in (("train", train_images), ("val", val_images or (None if val_json else train_images))):
            if folder:
                self.files[split] = (self.files[split][0], Path(folder).expanduser())
        categories = _read_coco(self.files["train"][0])["categories"]
        if not categories:
            raise ZooError(f"{train_json} lists no categories; COCO files need 'categories' with id and name")
        self.category_ids = [c["id"] for c in sorted(categories, key=lambda c: c["id"])]
        self.class_names = [c["name"] for c in sorted(categories, key=lambda c: c["id"])]
        self.num_classes = len(self.class_names)
        self.datasets: dict[str, Dataset] = {}

    @classmethod
    def for_evaluation(cls, path: str | os.PathLike, classes: list[str], **kwargs: Any) -> CocoDetection:
        """A COCO file or folder as a model's test set: its categories must be the model's classes."""
        data = cls(str(path), val_fraction=0.0, **kwargs)
        if data.class_names != list(classes):
            raise ZooError(
                f"the categories of {data.files['train'][0]} ({', '.join(data.class_names)}) are not the model's "
                f"classes ({', '.join(classes)}); give annotations with the same categories, in the same id order"
            )
        return data

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        hp = self.hparams
        train = CocoImages(*self.files["train"], self.category_ids, self.size, self.in_chans)
        if hp.val_json or not hp.val_fraction:
            val = CocoImages(*self.files["val"], self.category_ids, self.size, self.in_chans) if hp.val_json else train
            self.datasets = {"train": train, "val": val}
            return
        if len(train) < 2:
            raise ZooError(
                f"{self.files['train'][0]} has {len(train)} image(s): too few to hold some out for validation; "
                "give val_json, or val_fraction 0 to validate on the training images"
            )
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(hp.split_seed)).tolist()
        held = max(1, round(len(train) * hp.val_fraction))
        self.datasets = {"train": Subset(train, sorted(order[held:])), "val": Subset(train, sorted(order[:held]))}

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.datasets["train"],
            batch_size=self.hparams.batch_size,
            shuffle=True,
            num_workers=self.hparams.num_workers,
            collate_fn=collate_detection,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.datasets["val"],
            batch_size=self.hparams.batch_size,
            num_workers=self.hparams.num_workers,
            collate_fn=collate_detection,
        )

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()


def _read_coco(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DatasetNotFoundError(f"no such COCO annotation file: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ZooError(f"{path} is not valid JSON ({error.msg}, line {error.lineno})") from None
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ZooError(f"{path} has no {key!r} list; a COCO file has images, annotations and categories")
    return data


class CocoImages(Dataset):
    """The images of one COCO annotation file, resized to ``size``, with their boxes in pixels of that size."""

    def __init__(self, annotations: Path, folder: Path, category_ids: list[int], size: int, in_chans: int) -> None:
        data = _read_coco(annotations)
        index = {cid: i for i, cid in enumerate(category_ids)}
        self.folder, self.size, self.in_chans = folder, size, in_chans
        self.images = sorted(data["images"], key=lambda im: im["id"])
        self.boxes: dict[int, list[tuple[list[float], int]]] = {im["id"]: [] for im in self.images}
        for ann in data["annotations"]:
            if ann["category_id"] not in index:
                raise ZooError(
                    f"{annotations}: annotation {ann.get('id')} has category {ann['category_id']}, not in 'categories'"
                )
            if ann["image_id"] not in self.boxes:
                raise ZooError(
                    f"{annotations}: annotation {ann.get('id')} is for image {ann['image_id']}, not in 'images'"
                )
            self.boxes[ann["image_id"]].append((ann["bbox"], index[ann["category_id"]]))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, dict[str, Tensor]]:
        from PIL import Image
        from torchvision.transforms.v2 import functional as TF

        info = self.images[i]
        path = (self.folder / info["file_name"]).resolve()
        if not path.is_relative_to(self.folder.resolve()):
            raise ZooError(f"{info['file_name']} is outside {self.folder}; keep the images in their folder")
        with Image.open(path) as image:
            image = image.convert("L" if self.in_chans == 1 else "RGB")
            width, height = image.size
            pixels = TF.pil_to_tensor(image.resize((self.size, self.size), Image.BILINEAR))
        sx, sy = self.size / width, self.size / height
        boxes = [[x * sx, y * sy, (x + w) * sx, (y + h) * sy] for (x, y, w, h), _ in self.boxes[info["id"]]]
        labels = [label for _, label in self.boxes[info["id"]]]
        return pixels, {
            "boxes": torch.tensor(boxes, dtype=torch.float).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.long),
        }


def write_coco(dataset: Dataset, folder: str | os.PathLike, class_names: Sequence[str]) -> Path:
    """Save scenes (or any detection dataset) as PNG files + ``annotations.json`` in COCO format."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(len(dataset)):
        image, target = dataset[i]
        name = f"{i:05d}.png"
        Image.fromarray(image[0].numpy()).save(folder / name)
        images.append({"id": i, "file_name": name, "width": image.shape[-1], "height": image.shape[-2]})
        for box, label in zip(target["boxes"].tolist(), target["labels"].tolist()):
            x0, y0, x1, y1 = box
            annotations.append(
                {
                    "id": len(annotations),
                    "image_id": i,
                    "category_id": label + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(class_names)]
    path = folder / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path
