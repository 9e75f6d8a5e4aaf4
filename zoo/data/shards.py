"""Your images as LitData shards (``zoo prepare``): chunked files that :class:`~zoo.data.streaming.StreamingImages`
streams from a local folder or from S3-compatible storage, each process and node reading its own part.

``prepare_shards(src, out)`` reads the same sources as the folder datamodules, with the same splits:

* a folder of class sub-folders (``train/``, ``val/``, ``test/`` when present, otherwise the seeded
  per-class ``val_fraction`` hold-out of :class:`~zoo.data.folders.ImageFolderDataModule`), or a
  ``path,label`` CSV: samples ``{"image", "label"}``;
* a COCO folder (``annotations.json`` + ``images/``): samples ``{"image", "boxes", "labels"}``, boxes
  ``xyxy`` in pixels of the stored image, the split of :class:`~zoo.data.coco.CocoDetection`.

Images are kept as the file's own bytes (``encoded``: decoded, resized and cropped when read, at the
model's size), or decoded once into uint8 ``(C, size, size)`` arrays prepared like the folder datamodule
prepares them (``size`` given: decoding is paid once, here). Each split is one LitData dataset
(``OUT/train``, ``OUT/val``, ``OUT/test``: ``index.json`` + ``chunk-*.bin``) written by ``litdata.optimize``
with ``num_workers`` processes; ``OUT/zoo_shards.json`` records the task, the classes, the image format
and the counts, and is written last: a folder without it is an unfinished ``prepare``.

Nothing is overwritten: an ``OUT`` that holds anything is refused, except with ``resume=True`` on an
unfinished ``prepare`` of the same source, which keeps the splits already written and writes the others.
``OUT`` may be ``s3://bucket/prefix``: boto3 reads the endpoint (``AWS_ENDPOINT_URL``) and the credentials
from the standard AWS environment variables and files.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from zoo.errors import DatasetNotFoundError, InvalidValueError, ZooError

os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")  # no call to PyPI from a training job
META = "zoo_shards.json"
FORMAT = "zoo-shards/1"


def allow_http_endpoints() -> None:
    """Let LitData's obstore client reach ``http://`` endpoints (MinIO, moto, ``AWS_ENDPOINT_URL=http://...``).

    LitData builds its obstore store with fixed client options that leave ``allow_http`` off, so chunk
    transfers to a plain-HTTP S3-compatible endpoint fail ("builder error") while boto3 succeeds. The option
    only permits what the endpoint URL already says: an ``https://`` endpoint stays HTTPS."""
    from litdata.streaming import downloader

    options = getattr(downloader, "_OBSTORE_CLIENT_OPTIONS", None)
    if isinstance(options, dict):
        options["allow_http"] = "true"


# ---- where the shards live: a local folder or s3://bucket/prefix ----------------------------------
def is_remote(location: str | os.PathLike) -> bool:
    return str(location).startswith("s3://")


def join(location: str | os.PathLike, name: str) -> str:
    return str(location).rstrip("/") + "/" + name


def _s3(location: str) -> tuple[Any, str, str]:
    """``(boto3 client, bucket, key prefix)``: the endpoint and credentials from the AWS environment."""
    import boto3

    bucket, _, prefix = location[len("s3://") :].partition("/")
    return boto3.client("s3"), bucket, prefix.strip("/")


def read_text(location: str) -> str | None:
    """A small file's text, local or on S3; ``None`` when it does not exist."""
    if is_remote(location):
        client, bucket, key = _s3(location)
        try:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        except client.exceptions.NoSuchKey:
            return None
    path = Path(location).expanduser()
    return path.read_text() if path.is_file() else None


def write_text(location: str, text: str) -> None:
    if is_remote(location):
        client, bucket, key = _s3(location)
        client.put_object(Bucket=bucket, Key=key, Body=text.encode())
    else:
        Path(location).expanduser().write_text(text)


def list_names(location: str) -> list[str]:
    """The names directly under a folder (or S3 prefix); empty when there is none."""
    if is_remote(location):
        client, bucket, prefix = _s3(location)
        try:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/", Delimiter="/")
            names = []
            for page in pages:
                names += [p["Prefix"][len(prefix) + 1 :].rstrip("/") for p in page.get("CommonPrefixes", [])]
                names += [o["Key"][len(prefix) + 1 :] for o in page.get("Contents", [])]
            return names
        except client.exceptions.NoSuchBucket:
            raise DatasetNotFoundError(f"no such bucket: {location}; create it first") from None
    path = Path(location).expanduser()
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


def read_meta(location: str | os.PathLike) -> dict[str, Any]:
    """The ``zoo_shards.json`` of prepared shards, or a one-line error saying how to make them."""
    text = read_text(join(location, META))
    if text is None:
        raise DatasetNotFoundError(
            f"{location} holds no prepared shards (no {META}); write them with zoo prepare SRC --out {location}"
        )
    meta = json.loads(text)
    if meta.get("format") != FORMAT:
        raise ZooError(f"{join(location, META)} is of format {meta.get('format')!r}, not {FORMAT}; prepare again")
    return meta


def is_shard_source(data: Any) -> bool:
    """Whether ``data`` names prepared shards: ``s3://...`` or a folder holding ``zoo_shards.json``."""
    if not isinstance(data, (str, os.PathLike)):
        return False
    return is_remote(data) or (Path(data).expanduser() / META).is_file()


# ---- what to write: the source's samples per split -------------------------------------------------
def scan_source(src: str | os.PathLike, val_fraction: float, split_seed: int, classes: list[str] | None) -> dict:
    """``{"task", "classes", "splits": {split: [item, ...]}}`` of a class folder, a CSV or a COCO folder."""
    path = Path(src).expanduser()
    if not path.exists():
        raise DatasetNotFoundError(f"no such folder or CSV file: {path}")
    if (path / "annotations.json").is_file() or path.suffix == ".json":
        return _scan_coco(path, val_fraction, split_seed)
    from zoo.data.folders import ImageFolderDataModule

    data = ImageFolderDataModule(path, classes=classes, val_fraction=val_fraction, split_seed=split_seed)
    splits = {split: [(str(f), y) for f, y in items] for split, items in data.splits.items() if items}
    return {"task": "classification", "classes": data.class_names, "splits": splits}


def _scan_coco(path: Path, val_fraction: float, split_seed: int) -> dict:
    import torch

    from zoo.data.coco import CocoDetection, CocoImages

    data = CocoDetection(str(path), val_fraction=val_fraction, split_seed=split_seed)
    annotations, folder = data.files["train"]
    images = CocoImages(annotations, folder, data.category_ids, 0, 1)
    items = [
        (str(folder / info["file_name"]), images.boxes[info["id"]], info.get("width"), info.get("height"))
        for info in images.images
    ]
    splits = {"train": items}
    if val_fraction:  # CocoDetection's own split: the same images held out
        order = torch.randperm(len(items), generator=torch.Generator().manual_seed(split_seed)).tolist()
        held = min(len(items) - 1, max(1, round(len(items) * val_fraction)))
        splits = {"train": [items[i] for i in sorted(order[held:])], "val": [items[i] for i in sorted(order[:held])]}
    return {"task": "detection", "classes": data.class_names, "splits": splits}


class SampleWriter:
    """One source item → one shard sample (runs in ``litdata.optimize``'s worker processes)."""

    def __init__(self, task: str, size: tuple[int, int, int] | None, counter: Any = None) -> None:
        self.task, self.size, self.counter = task, size, counter
        self._prepare = None

    def _prepared(self, image: Any) -> Any:
        if self._prepare is None:  # the folder datamodule's preparation (channels, 8 bits, size)
            from zoo.data.folders import ImageFolderDataModule

            self._prepare = ImageFolderDataModule(input_size=self.size)._prepare(self.size)
        import torch

        return self._prepare(image).as_subclass(torch.Tensor).numpy()

    def __call__(self, item: tuple) -> dict[str, Any]:
        import numpy as np
        from PIL import Image

        file = item[0]
        raw = Path(file).read_bytes()
        try:
            Image.open(io.BytesIO(raw)).verify()
        except (OSError, ValueError, SyntaxError):
            raise ValueError(f"zoo-unreadable {file}") from None  # named in one line by _optimize_split
        sample: dict[str, Any] = {"id": item[-1]}
        if self.task == "classification":
            with Image.open(io.BytesIO(raw)) as image:
                sample["image"] = raw if self.size is None else self._prepared(image)
            sample["label"] = int(item[1])
        else:
            with Image.open(io.BytesIO(raw)) as image:
                width, height = image.size
                if self.size is None:
                    sample["image"] = raw
                else:  # resized (not cropped) like CocoImages, the boxes scaled with it
                    mode = "L" if self.size[0] == 1 else "RGB"
                    side = self.size[-1]
                    sample["image"] = np.asarray(image.convert(mode).resize((side, side), Image.BILINEAR))
                    sample["image"] = sample["image"].reshape(side, side, -1).transpose(2, 0, 1).copy()
            sx, sy = (1.0, 1.0) if self.size is None else (self.size[-1] / width, self.size[-1] / height)
            boxes = [[x * sx, y * sy, (x + w) * sx, (y + h) * sy] for (x, y, w, h), _ in item[1]]
            sample["boxes"] = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
            sample["labels"] = np.asarray([label for _, label in item[1]], dtype=np.int64)
            sample["size"] = np.asarray([height, width], dtype=np.int64)  # of the stored image
            if self.size is not None:
                sample["size"] = np.asarray(self.size[1:], dtype=np.int64)
        if self.counter is not None:
            with self.counter.get_lock():
                self.counter.value += 1
        return sample


# ---- zoo prepare ------------------------------------------------------------------------------------
def prepare_shards(
    src: str | os.PathLike,
    out: str | os.PathLike,
    size: int | tuple[int, int, int] | None = None,
    channels: int = 3,
    val_fraction: float = 0.2,
    split_seed: int = 0,
    classes: list[str] | None = None,
    num_workers: int | None = None,
    chunk_bytes: str = "64MB",
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write ``src`` as LitData shards under ``out`` (see the module doc); returns the recorded index.

    Args:
        size: store images decoded, as uint8 ``(channels, size, size)`` (an int) or ``(C, H, W)``;
            ``None`` (default): the files' own encoded bytes, decoded when read.
        channels: 1 (grey) or 3 (colour), with ``size``.
        val_fraction, split_seed, classes: the split and class list, as the folder datamodules take them.
        num_workers: writer processes (default: the CPU count, at most 8); chunk_bytes: the size of a shard.
        resume: finish an interrupted ``prepare`` into the same ``out`` (written splits kept).
    """
    if not 0 <= val_fraction < 1:
        raise InvalidValueError(f"val_fraction must be in [0, 1), got {val_fraction!r} (e.g. 0.2)")
    if isinstance(size, int):
        if channels not in (1, 3):
            raise InvalidValueError(f"channels must be 1 or 3, got {channels!r}")
        size = (channels, size, size)
    if size is not None and (len(size) != 3 or min(size) < 1):
        raise InvalidValueError(f"size must be a side ≥ 1 or (C, H, W), got {size!r}")
    out = str(out) if is_remote(out) else str(Path(out).expanduser().resolve())
    found = scan_source(src, val_fraction, split_seed, classes)
    meta = {
        "format": FORMAT,
        "task": found["task"],
        "classes": found["classes"],
        "image": "encoded" if size is None else "uint8",
        "input_size": list(size) if size else None,
        "splits": {split: len(items) for split, items in found["splits"].items()},
        "source": str(src),
    }
    done = _check_target(out, meta, resume)
    if not is_remote(out):
        Path(out).mkdir(parents=True, exist_ok=True)
    write_text(join(out, ".zoo_prepare.json"), json.dumps(meta))  # marks an unfinished prepare of this source
    workers = num_workers or min(8, os.cpu_count() or 1)
    for split, items in found["splits"].items():
        if split in done:
            continue
        numbered = [(*item, i) for i, item in enumerate(items)]
        if split == "train":  # written in a seeded random order: see mixed_order
            numbered = mixed_order(numbered, split_seed)
        _optimize_split(
            found["task"],
            size,
            numbered,
            join(out, split),
            workers,
            chunk_bytes,
            progress,
            resume,
        )
    write_text(join(out, META), json.dumps(meta, indent=1))
    return meta


def mixed_order(items: list, seed: int) -> list:
    """The training samples in a seeded random order, so that every chunk holds every class.

    A folder is scanned class by class, and LitData shuffles the order of the chunks and the samples within
    each chunk, not across chunks: written in scan order, a 64 MB chunk of 224-px photos (about 400) holds one
    or two classes, and so does every batch drawn from it (1.9 classes a batch of 128 on 10 classes, against
    about 10 from a random order)."""
    import random

    mixed = list(items)
    random.Random(seed).shuffle(mixed)
    return mixed


def _check_target(out: str, meta: dict[str, Any], resume: bool) -> set[str]:
    """The splits already written (``resume``); a one-line refusal when ``out`` holds anything else."""
    names = [n for n in list_names(out) if n]
    if not names:
        return set()
    if META in names:
        raise ZooError(f"{out} already holds prepared shards; give another --out (nothing is overwritten)")
    started = read_text(join(out, ".zoo_prepare.json"))
    if started is None:
        raise ZooError(
            f"{out} is not empty and holds no zoo shards; give an empty or new --out (nothing is overwritten)"
        )
    if not resume:
        raise ZooError(f"{out} holds an unfinished zoo prepare; pass --resume to finish it, or give another --out")
    if {k: v for k, v in json.loads(started).items()} != meta:
        raise ZooError(f"{out} holds an unfinished prepare of other data or settings; give another --out")
    return {split for split in meta["splits"] if "index.json" in list_names(join(out, split))}


@contextmanager
def _private_staging():
    """LitData stages chunks bound for remote storage in one fixed folder (``/tmp/chunks`` and ``/tmp/data``) and
    empties it when it starts: two ``zoo prepare`` runs to object storage on one machine deleted each other's
    chunks. Each run stages in a temporary folder of its own, unless the user set LitData's variables."""
    names = {"DATA_OPTIMIZER_CACHE_FOLDER": "chunks", "DATA_OPTIMIZER_DATA_CACHE_FOLDER": "data"}
    if any(name in os.environ for name in names):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="zoo-prepare-") as staging:
        os.environ.update({name: os.path.join(staging, folder) for name, folder in names.items()})
        try:
            yield
        finally:
            for name in names:
                os.environ.pop(name, None)


def _optimize_split(
    task: str, size: Any, items: list, output: str, workers: int, chunk_bytes: str, progress: bool, resume: bool
) -> None:
    import multiprocessing as mp

    import litdata

    allow_http_endpoints()
    fork = "fork" in mp.get_all_start_methods()
    counter = mp.get_context("fork").Value("l", 0) if fork else None
    bar, stop = None, threading.Event()
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc=f"{output.rstrip('/').rsplit('/', 1)[-1]}", unit="img", leave=True)

        def follow() -> None:
            while not stop.wait(0.2) and counter is not None:
                bar.n = counter.value
                bar.refresh()

        threading.Thread(target=follow, daemon=True).start()
    import re

    try:
        with _private_staging():
            litdata.optimize(
                fn=SampleWriter(task, size, counter),
                inputs=items,
                output_dir=output,
                chunk_bytes=chunk_bytes,
                num_workers=min(workers, len(items)),
                start_method="fork" if fork else None,
                mode="overwrite" if resume else None,  # only an unfinished split of this prepare is written again
                reorder_files=False,
                verbose=False,
            )
    except RuntimeError as error:  # a worker's error comes back as the text of its traceback
        unreadable = re.search(r"zoo-unreadable (.+?\.\w+)", str(error))
        if unreadable is None:
            raise
        raise ZooError(
            f"{unreadable.group(1)} could not be read as an image; fix or remove it, then zoo prepare again with --resume"
        ) from None
    finally:
        stop.set()
        if bar is not None:
            bar.n = len(items)
            bar.close()
