"""Images streamed from LitData shards (``zoo prepare``), on local disk or S3-compatible storage.

    zoo prepare photos/ --out s3://bucket/photos --size 224
    zoo fit --config RECIPE --data zoo.data.StreamingImages --data.init_args.input_dir s3://bucket/photos
    zoo.finetune("resnet20.fmnist", "s3://bucket/photos")

:class:`StreamingImages` reads the shards' ``zoo_shards.json`` (task, classes, image format) when it is
made, and builds its ``litdata.StreamingDataset`` per split in ``setup``, once the processes know one
another: each process (and each of its loader workers) then reads its own chunks, and only those are
downloaded (into ``cache_dir``). Batches are those of the folder datamodules: classification
``(uint8 (N, C, H, W), labels)`` prepared at the model's size with the folder datamodule's own training
augmentation, detection ``(uint8 images, [{"boxes", "labels"}])`` like :class:`~zoo.data.coco.CocoDetection`.

Across processes: training drops the few samples that would give the ranks unequal batch counts
(LitData's ``drop_last``, at most ``world size × workers × batch size - 1`` an epoch, a different few each
shuffled epoch; none when the count divides), validation and test read every sample exactly once.
The training loader is a ``StreamingDataLoader``: its position is saved in Lightning's checkpoints, so a
run resumed from a mid-epoch ``last.ckpt`` goes on from the batch it had reached.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from zoo.data.folders import _resize_tensor
from zoo.data.shards import allow_http_endpoints, is_remote, join, read_meta
from zoo.errors import InvalidValueError, ZooError

# Each LitData reader decodes a whole chunk's samples at once (the bytes → arrays step, not the images).
# LitData's default ("auto": windows of 256 samples, one window cached) decodes a window per sample when
# a loader worker's shuffled share of a chunk does not start on a window boundary: with 2 workers, every
# other epoch was 10-30x slower (13.6 s vs 1.2 s for 10,000 28-px samples; bench_streaming.py).
BATCH_DECODE = "all"


@contextmanager
def _quiet_drop_last_warning():
    """LitData warns that ``drop_last=False`` under DDP may hang collectives; evaluation has none per step."""
    logger = logging.getLogger("litdata.streaming.dataset")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class ShardItem:
    """One stored sample → the task's ``(image, target)``, at the model's size (runs in loader workers)."""

    def __init__(self, task: str, encoded: bool, size: tuple[int, int, int], prepare: Any, augment: Any) -> None:
        self.task, self.encoded, self.size, self.prepare, self.augment = task, encoded, size, prepare, augment

    def _image(self, stored: Any) -> Tensor:
        if self.encoded:
            from PIL import Image

            with Image.open(io.BytesIO(bytes(stored))) as image:
                if self.task == "detection":  # resized, not cropped, like CocoImages: the boxes scale with it
                    image = image.convert("L" if self.size[0] == 1 else "RGB").resize(self.size[:0:-1])
                    from torchvision.transforms.v2 import functional as TF

                    return TF.pil_to_tensor(image)
                return self.prepare(image).as_subclass(Tensor)
        # LitData's numpy deserializer hands out its own writable copy: shared, not copied again
        image = (
            torch.from_numpy(stored)
            if isinstance(stored, np.ndarray) and stored.flags.writeable
            else torch.tensor(stored)
        )
        if tuple(image.shape) != tuple(self.size):
            image = _resize_tensor(image[None], self.size)[0]
        return image

    def __call__(self, item: dict[str, Any]) -> tuple[Tensor, Any]:
        image = self._image(item["image"])
        if self.task == "classification":
            if self.augment is not None:
                image = self.augment(image)
            return image, int(item["label"])  # the batch's labels: one tensor, made by the collate function
        height, width = (int(v) for v in item["size"])
        scale = torch.tensor([self.size[2] / width, self.size[1] / height] * 2, dtype=torch.float)
        boxes = torch.tensor(item["boxes"], dtype=torch.float).reshape(-1, 4) * scale
        target = {"boxes": boxes, "labels": torch.tensor(item["labels"], dtype=torch.long).reshape(-1)}
        return (image, target) if self.augment is None else self.augment(image, target)


def _epoch_loader(dataset: Any, evaluation: bool = False, **kwargs: Any) -> Any:
    """A ``StreamingDataLoader`` that leaves its resumed state once the resumed epoch has been read through,
    and (``evaluation``) spreads the samples over the processes and their workers one by one.

    LitData keeps ``restore`` on until its iterator runs out; Lightning closes the iterator of a resumed epoch
    after the last expected batch without asking for one more, so the next epoch would resume the old
    position again (and yield nothing). Here the flag is cleared when every batch of the epoch was yielded.

    LitData hands each process whole batches and the remainder to the last one: 6 validation images, batch 4,
    on 2 processes gave the first none, and Lightning stops on a process whose loader is empty (with 64
    processes at batch 64, any set under 4,096 images). An evaluation set is instead spread sample by sample
    (its dataset's batch size 1: each process gets at least ``count // processes``), and the loader's length
    is the batches its workers really yield (a partial batch each), which Lightning reads as the last one."""
    from litdata import StreamingDataLoader

    class EpochLoader(StreamingDataLoader):
        def __iter__(self) -> Any:
            try:
                yield from super().__iter__()
            finally:
                if self.restore and self._num_samples_yielded_streaming >= len(self) * self.batch_size:
                    self.restore = False

        def __len__(self) -> int:
            if not evaluation:
                return super().__len__()
            data, workers = self.dataset, self.dataset.num_workers
            env = data.distributed_env
            if len(data) == 0:  # also makes LitData's shuffler
                raise ZooError(
                    f"{data.input_dir.path or data.input_dir.url} holds fewer images than the {env.world_size} "
                    "processes reading it; evaluate on more images or fewer processes"
                )
            _, intervals = data.shuffler.get_chunks_and_intervals_per_workers(env, workers, 1, data.current_epoch)
            mine = intervals[env.global_rank * workers : (env.global_rank + 1) * workers]
            counts = [sum(end - start for _, start, end, _ in worker) for worker in mine]
            return sum(-(-count // self.batch_size) for count in counts)

    loader = EpochLoader(dataset, **kwargs)
    if evaluation:
        dataset.set_batch_size(1)
    return loader


class StreamingImages(L.LightningDataModule):
    """Train, validate and test on prepared shards (``zoo prepare``), local or ``s3://``.

    Args:
        input_dir: the ``--out`` of ``zoo prepare``: a folder or ``s3://bucket/prefix``.
        batch_size, num_workers: loader settings (per process); workers read and decode in parallel.
        augment: classification: the folder datamodule's training augmentation (``True``, ``False``,
            ``"trivialaugment"``, ``"randaugment"``); detection: ``CocoDetection``'s box-aware flips, scale
            jitter and pixel noise (``True``) or none.
        shuffle: training order shuffled every epoch (the chunks, then all the samples within each chunk).
        input_size: ``(C, H, W)`` to deliver; default: the model being trained's, else the stored size.
        cache_dir: where remote chunks are kept while read (default: LitData's cache folder).
        max_cache_size: how much of ``cache_dir`` to use (e.g. ``"50GB"``); default LitData's.
        seed: the shuffling seed (the same on every process: they split one order).
    """

    recipe_data = ("zoo.data.StreamingImages", "input_dir")  # the --data flags that build it (zoo finetune)

    def __init__(
        self,
        input_dir: str,
        batch_size: int = 32,
        num_workers: int | None = None,
        augment: bool | str = True,
        shuffle: bool = True,
        input_size: tuple[int, int, int] | None = None,
        cache_dir: str | None = None,
        max_cache_size: str | None = None,
        seed: int = 42,
    ) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidValueError(f"batch_size must be a whole number ≥ 1, got {batch_size!r}")
        input_dir = str(input_dir) if is_remote(input_dir) else str(Path(input_dir).expanduser().resolve())
        self.save_hyperparameters()
        self.hparams["input_dir"] = input_dir
        self.meta = read_meta(input_dir)
        self.task: str = self.meta["task"]
        self.class_names: list[str] = list(self.meta["classes"])
        self.dataset_name = input_dir.rstrip("/").rsplit("/", 1)[-1]
        self.datasets: dict[str, Any] = {}
        self._train_loader: Any = None
        self._resume: dict[str, Any] | None = None

    @classmethod
    def for_evaluation(cls, input_dir: str, classes: list[str], **kwargs: Any) -> StreamingImages:
        """Prepared shards as a model's test set (their ``test`` split, else ``val``): the same classes."""
        data = cls(input_dir, augment=False, shuffle=False, **kwargs)
        if data.class_names != list(classes):
            raise ZooError(
                f"the shards at {input_dir} have the classes {', '.join(data.class_names[:5])}..., not the model's "
                f"({', '.join(list(classes)[:5])}...); prepare them with the model's classes (--classes)"
            )
        return data

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def train_count(self) -> int | None:
        """Training images, from the shards' index (the step budget of :mod:`zoo.finetune_defaults` reads it)."""
        return self.meta["splits"].get("train")

    @property
    def test_split(self) -> str:
        """Where the test numbers come from: the ``test`` shards, else the validation ones."""
        return "test" if "test" in self.meta["splits"] else "val"

    # ---- Lightning hooks -------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        from litdata import StreamingDataset

        allow_http_endpoints()
        # Lightning's caution about IterableDatasets with a length: LitData gives each worker its own samples,
        # and the length is the batches they yield (see _epoch_loader)
        warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")
        size = self._input_size()
        encoded = self.meta["image"] == "encoded"
        for split in self.meta["splits"]:
            train = split == "train"
            with _quiet_drop_last_warning():
                self.datasets[split] = StreamingDataset(
                    join(self.hparams.input_dir, split),
                    cache_dir=None if self.hparams.cache_dir is None else join(self.hparams.cache_dir, split),
                    shuffle=train and self.hparams.shuffle,
                    drop_last=None if train else False,  # every evaluation sample once; training: equal batches
                    seed=self.hparams.seed,
                    max_cache_size=self.hparams.max_cache_size,
                    batch_decode=BATCH_DECODE,
                    item_shuffle_window=0 if train else None,  # a chunk's samples fully permuted (decoded whole)
                    transform=ShardItem(self.task, encoded, *self._transforms(size, train)),
                )

    def _input_size(self) -> tuple[int, int, int]:
        if self.hparams.input_size is not None:
            return tuple(self.hparams.input_size)
        module = getattr(getattr(self, "trainer", None), "lightning_module", None)
        if module is not None and hasattr(module, "input_size"):
            return tuple(module.input_size)
        if self.meta.get("input_size"):
            return tuple(self.meta["input_size"])
        raise ZooError("StreamingImages needs input_size=(C, H, W), or a zoo model being trained to take it from")

    def _transforms(self, size: tuple[int, int, int], train: bool) -> tuple[tuple[int, int, int], Any, Any]:
        """``(size before augmentation, preparation of a file, augmentation)``: the folder datamodule's own.

        Evaluation images get the model's preprocessing; training images of a photo network (64 px and more)
        are kept a little larger than the crop, then random-resized-cropped and flipped; smaller networks'
        are shifted and flipped (:mod:`zoo.data.photo_augment`)."""
        if self.task != "classification":  # detection: CocoDetection's box-aware flips, zoom and noise
            from zoo.data.box_augment import BoxAugment

            return size, None, BoxAugment() if train and self.hparams.augment else None
        from torchvision.transforms import v2

        from zoo.data.folders import ImageFolderDataModule
        from zoo.data.image_modes import to_8bit
        from zoo.data.photo_augment import cache_side, cache_steps, is_photo, train_augment

        folder = ImageFolderDataModule(input_size=size, augment=self.hparams.augment)
        folder.trainer = getattr(self, "trainer", None)  # the model's own preprocessing, when one is training
        augment = train_augment(size, self.hparams.augment) if train else None
        if augment is not None and is_photo(size):
            return (size[0], cache_side(size), cache_side(size)), v2.Compose([to_8bit, *cache_steps(size)]), augment
        return size, folder._prepare(size), augment

    def _workers(self) -> int:
        if self.hparams.num_workers is not None:
            return self.hparams.num_workers
        return min(4, max(0, (os.cpu_count() or 1) - 1))

    def _loader(self, split: str) -> Any:
        collate = None
        if self.task == "detection":
            from zoo.data.scenes import collate_detection

            collate = collate_detection
        return _epoch_loader(
            self.datasets[split],
            evaluation=split != "train",
            batch_size=self.hparams.batch_size,
            num_workers=self._workers(),
            collate_fn=collate,
        )

    def train_dataloader(self) -> Any:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # each process draws its own crops and flips (the loader workers' seeds come from this one)
            base = int(os.environ.get("PL_GLOBAL_SEED", torch.initial_seed() % 2**31))
            torch.manual_seed(base + 1000 * torch.distributed.get_rank())
        self._train_loader = self._loader("train")
        if self._resume:  # a checkpoint's position, restored here: see load_state_dict
            self._train_loader.load_state_dict(self._resume)
            self._resume = None
        return self._train_loader

    # ---- the loader's position in checkpoints ---------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The training loader's position (LitData's ``StreamingDataLoader.state_dict``), for checkpoints."""
        return {"train_loader": self._train_loader.state_dict()} if self._train_loader is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume the training loader where the checkpoint left it.

        Lightning also keeps the loader's state in its fit loop, but loads it only when it creates the loader
        after restoring the loops; a model whose ``configure_optimizers`` reads ``estimated_stepping_batches``
        (the zoo's schedules do) makes it create the loader earlier, and the epoch would start again from its
        first batch. The datamodule's own state is restored before that, and applied when the loader is made."""
        self._resume = state.get("train_loader")
        if self._resume and self._train_loader is not None:
            self._train_loader.load_state_dict(self._resume)
            self._resume = None

    def val_dataloader(self) -> Any:
        return self._loader("val") if "val" in self.datasets else []

    def test_dataloader(self) -> Any:
        return self._loader(self.test_split) if self.test_split in self.datasets else []

    def predict_dataloader(self) -> Any:
        return self.test_dataloader()
