"""Your own detection data: COCO-format folders (``annotations.json`` + ``images/``).

:class:`CocoDetection` yields the same batches as :class:`~zoo.data.scenes.FashionMNISTScenes`:
``(images (N, C, H, W) uint8, targets)``, each target ``{"boxes": (k, 4) xyxy pixels, "labels": (k,)}``
(torchvision's detection format). :func:`write_coco` saves any detection dataset in this format.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from zoo.data.scenes import detection_loader
from zoo.errors import DatasetNotFoundError, InvalidValueError, ZooError


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
    training images (drawn with ``split_seed``) are held out for validation. ``test_json`` is the test set;
    without it the test numbers are measured on the validation images (``test_split`` says which, and a
    card written from them says so).

    Images are converted to ``in_chans`` channels and resized to ``size × size`` (boxes scaled alike);
    left out, both are the model's being trained (its ``input_size``), as the folder datamodule does, or
    ``detr_lite``'s 64 px grey when no model is training.
    Categories become classes 0..K-1 in the order of their ids; their names are the class names.
    ``augment``: box-aware flips, scale jitter and photometric noise on training images
    (:mod:`zoo.data.box_augment`).
    """

    dataset_name = "coco_json"

    def __init__(
        self,
        train_json: str,
        train_images: str | None = None,
        val_json: str | None = None,
        val_images: str | None = None,
        test_json: str | None = None,
        size: int | None = None,
        in_chans: int | None = None,
        batch_size: int = 16,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        augment: bool = True,
    ) -> None:
        super().__init__()
        if not 0 <= val_fraction < 1:
            raise InvalidValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if val_images and not val_json:
            raise InvalidValueError("val_images needs val_json, the annotations of those images")
        # the image size and channels are the model's too: kept out of hparams, which Lightning's loggers
        # merge with the model's (where ``in_chans=None`` means "the architecture's") and refuse to differ
        self.save_hyperparameters(ignore=["size", "in_chans"])
        self.size, self.in_chans = size, in_chans
        self.files = {"train": coco_files(train_json)}
        if train_images:
            self.files["train"] = (self.files["train"][0], Path(train_images).expanduser())
        if val_json:
            self.files["val"] = (coco_files(val_json)[0], Path(val_images)) if val_images else coco_files(val_json)
        if test_json:
            self.files["test"] = coco_files(test_json)
        categories = _read_coco(self.files["train"][0])["categories"]
        if not categories:
            raise ZooError(
                f"{self.files['train'][0]} lists no categories; COCO files need 'categories' with id and name"
            )
        categories = sorted(categories, key=lambda c: c["id"])
        self.category_ids, self.class_names = [c["id"] for c in categories], [c["name"] for c in categories]
        self.num_classes = len(self.class_names)
        self.datasets: dict[str, Dataset] = {}

    @classmethod
    def for_evaluation(cls, path: str | os.PathLike, classes: list[str], **kwargs: Any) -> CocoDetection:
        """A COCO file or folder as a model's test set: its categories must be the model's classes."""
        data = cls(str(path), val_fraction=0.0, augment=False, **kwargs)
        if data.class_names != list(classes):
            raise ZooError(
                f"the categories of {data.files['train'][0]} ({', '.join(data.class_names)}) are not the model's "
                f"classes ({', '.join(classes)}); give annotations with the same categories, in the same id order"
            )
        return data

    @property
    def test_split(self) -> str:
        """Where the test numbers come from: ``"test"`` (``test_json``) or ``"val"``."""
        return "test" if "test" in self.files else "val"

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        hp = self.hparams
        size, in_chans = self._input_size()
        found = {split: CocoImages(*files, self.category_ids, size, in_chans) for split, files in self.files.items()}
        train = found["train"]
        if "val" not in found and hp.val_fraction:
            if len(train) < 2:
                raise ZooError(
                    f"{self.files['train'][0]} has {len(train)} image(s): too few to hold some out for "
                    "validation; give val_json, or more images"
                )
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(hp.split_seed)).tolist()
            held = min(len(train) - 1, max(1, round(len(train) * hp.val_fraction)))
            found["train"], found["val"] = Subset(train, sorted(order[held:])), Subset(train, sorted(order[:held]))
        found.setdefault("val", train)  # val_fraction 0: validated on the training images
        if hp.get("augment", True):
            from zoo.data.box_augment import BoxAugmented

            found["train"] = BoxAugmented(found["train"])
        self.datasets = found

    def train_count(self) -> int:
        """Training images, before setup (the step budget of :mod:`zoo.finetune_defaults` reads it)."""
        listed = len(_read_coco(self.files["train"][0])["images"])
        if "val" in self.files or not self.hparams.val_fraction:
            return listed
        return listed - min(listed - 1, max(1, round(listed * self.hparams.val_fraction)))

    def _input_size(self) -> tuple[int, int]:
        """(side, channels) the images are prepared at: as given, else the model's being trained."""
        if self.size is not None and self.in_chans is not None:
            return self.size, self.in_chans
        module = getattr(getattr(self, "trainer", None), "lightning_module", None)
        if module is None or not hasattr(module, "input_size"):  # no model to ask: detr_lite's 64-px grey
            return self.size or 64, self.in_chans or 1
        return self.size or int(module.input_size[-1]), self.in_chans or int(module.input_size[0])

    def train_dataloader(self) -> DataLoader:
        return detection_loader(self, "train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return detection_loader(self, "val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return detection_loader(self, self.test_split, shuffle=False)


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
        if not self.images:
            raise ZooError(f"{annotations} lists no images; a COCO file lists its images under 'images'")
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
