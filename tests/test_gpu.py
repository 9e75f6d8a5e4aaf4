"""CUDA checks, marked ``gpu`` and skipped without CUDA; ``bash benchmarks/gpu_check.sh`` runs them when a GPU is lent.

For every (task, family) of the registry, its lite entry and its ImageNet-size entry with the fewest
parameters (:func:`picks`): 2 training steps and a validation step in a Lightning Trainer on CUDA with
``bf16-mixed`` and ``channels_last``, then once more with ``compile=True``. Then ``predict``, ``zoo.backbone``
and export from a CUDA model, DETR's matcher and criterion with targets on the device, every metric of every
task on the device (the same numbers as on the CPU), and DDP over every visible GPU. The last test is not a
GPU test: the script's dry run, end to end on the CPU, so that it cannot rot.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import warnings
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from test_cli import run_script

try:  # DETR's random outputs and targets, from the matcher/loss tests
    from test_detr_loss import _outputs, _targets
except ImportError:  # where they lived before tests/test_detr_loss.py
    from test_detection import _outputs, _targets
from torch.utils.data import DataLoader, TensorDataset

import zoo
from zoo.data.scenes import collate_detection
from zoo.registry import get_entry, list_models

REPO = Path(__file__).resolve().parents[1]
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (bash benchmarks/gpu_check.sh runs these on one)")
BATCH = 4


def picks() -> list[str]:
    """Per (task, family): the entry with the fewest parameters among the small-image ones (the lite model)
    and among the ImageNet-size ones (input ≥ 200 px), where the family has them."""
    groups = defaultdict(list)
    for name in list_models():
        entry = get_entry(name)
        groups[entry.task, entry.family].append(entry)
    chosen = []
    for _, entries in sorted(groups.items()):
        for group in ([e for e in entries if e.input_size[-1] < 200], [e for e in entries if e.input_size[-1] >= 200]):
            if group:
                chosen.append(min(group, key=lambda e: e.num_params).name)
    return chosen


MODELS = picks()
TASKS = sorted({get_entry(name).task for name in MODELS})


def synthetic(task: str, input_size: tuple[int, ...], classes: int, count: int = 2 * BATCH) -> DataLoader:
    """Batches of the task's kind: random pixels in [0, 1] with labels, boxes (detection) or masks (segmentation)."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(count, *input_size, generator=g)
    if task == "classification":
        return DataLoader(TensorDataset(images, torch.randint(0, classes, (count,), generator=g)), batch_size=BATCH)
    if task == "detection":
        height, width = input_size[1:]
        targets = []
        for _ in range(count):
            k = int(torch.randint(1, 4, (1,), generator=g))
            corner = torch.rand(k, 2, generator=g) * torch.tensor([width / 2, height / 2])
            size = (torch.rand(k, 2, generator=g) * 0.4 + 0.1) * torch.tensor([width, height])
            boxes = torch.cat([corner, corner + size], dim=1)
            targets.append({"boxes": boxes, "labels": torch.randint(0, classes, (k,), generator=g)})
        return DataLoader(list(zip(images, targets)), batch_size=BATCH, collate_fn=collate_detection)
    if task == "segmentation":  # a label per pixel: 0 the background, 1..classes the classes
        masks = torch.randint(0, classes + 1, (count, *input_size[1:]), generator=g)
        return DataLoader(TensorDataset(images, masks), batch_size=BATCH)
    raise AssertionError(f"task {task!r} has no synthetic batches here: add them to synthetic() in tests/test_gpu.py")


def trainer(**kwargs):
    import lightning as L

    options = {
        "accelerator": "gpu",
        "devices": 1,
        "precision": "bf16-mixed",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return L.Trainer(**{**options, **kwargs})


def _train_on_cuda(name: str, compile: bool) -> None:
    torch.manual_seed(0)
    model = zoo.create(name, channels_last=True, compile=compile)
    entry = get_entry(name)
    data = synthetic(entry.task, model.input_size, model.hparams.num_classes)
    before = [p.detach().clone() for p in model.parameters()]
    run = trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0)
    run.fit(model, data, data)
    assert run.global_step == 2
    assert all(p.device.type == "cuda" and torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(b.cuda(), p) for b, p in zip(before, model.parameters())), "no weight moved"
    metrics = {k: float(v) for k, v in run.callback_metrics.items()}
    assert "val_loss" in metrics and all(torch.isfinite(torch.tensor(v)) for v in metrics.values()), metrics
    convs = [m.weight for m in model.net.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.ndim == 4]
    assert not convs or convs[0].is_contiguous(memory_format=torch.channels_last)
    if compile:
        assert model.compile_seconds > 0 and getattr(model.net, "_compiled_call_impl", None) is not None


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", MODELS)
def test_two_training_steps_and_validation_in_bf16_channels_last(name: str) -> None:
    _train_on_cuda(name, compile=False)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("task", TASKS)
def test_every_metric_on_the_device_gives_the_cpu_numbers(task: str) -> None:
    """``validate`` and ``test`` of the task's lite model (its own steps and metrics) on CUDA and on the CPU."""
    import lightning as L
    import torchmetrics

    name = next(m for m in MODELS if get_entry(m).task == task)
    torch.manual_seed(0)
    model = zoo.create(name).eval()
    data = synthetic(task, model.input_size, model.hparams.num_classes)
    results = {}
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # float32 as on the CPU
        for device in ("cpu", "cuda"):
            run = L.Trainer(accelerator="gpu" if device == "cuda" else "cpu", devices=1, logger=False)
            results[device] = {**run.validate(model, data, verbose=False)[0], **run.test(model, data, verbose=False)[0]}
            metrics = [m for m in model.modules() if isinstance(m, torchmetrics.Metric)]
            assert metrics and all(m.device.type == device for m in metrics), name
    assert results["cpu"].keys() == results["cuda"].keys()
    for key, value in results["cpu"].items():
        assert results["cuda"][key] == pytest.approx(value, abs=2e-3), key


@pytest.mark.gpu
@needs_cuda
def test_predict_backbone_and_export_from_a_cuda_model(tmp_path) -> None:
    from zoo.exporting import export, onnx_session
    from zoo.predict import predict_files

    cpu = zoo.load("resnet20.fmnist")
    model = zoo.load("resnet20.fmnist").cuda()
    x = torch.rand(5, 1, 28, 28)
    probs = model.predict_proba(x)  # a CPU batch in, the model's device out
    assert probs.device.type == "cuda" and torch.allclose(probs.cpu(), cpu.predict_proba(x), atol=1e-3)
    on_gpu = predict_files(model, [str(REPO / "samples")], batch_size=4)
    on_cpu = predict_files(cpu, [str(REPO / "samples")], batch_size=4)
    assert [p.labels for p in on_gpu.predictions] == [p.labels for p in on_cpu.predictions]
    features = zoo.backbone("resnet20.fmnist").cuda()
    maps = features(x.cuda())
    assert [m.device.type for m in maps] == ["cuda"] * len(maps)
    assert [m.shape[1] for m in maps] == [info["num_chs"] for info in features.feature_info]
    detector = zoo.create("detr_lite").cuda().eval()
    found = detector.predict(torch.rand(2, *detector.input_size), threshold=0.0)
    assert found[0]["boxes"].device.type == "cuda" and found[0]["boxes"].shape[1] == 4
    with torch.no_grad():
        expected = cpu(x)
    session = onnx_session(export(model, tmp_path / "r20.onnx"))
    got = torch.from_numpy(session.run(None, {"pixels": x.numpy()})[0])
    assert torch.allclose(got, expected, atol=1e-3)
    program = torch.export.load(str(export(model, tmp_path / "r20.pt2", "exported-program"))).module()
    with torch.no_grad():
        assert torch.allclose(program(x.cuda()).cpu(), expected, atol=1e-3)


@pytest.mark.gpu
@needs_cuda
def test_detr_matcher_and_criterion_with_targets_on_the_device() -> None:
    from zoo.tasks.matcher import HungarianMatcher
    from zoo.tasks.set_criterion import SetCriterion

    outputs, targets = _outputs(), _targets()
    outputs["aux_outputs"] = [_outputs(seed=5)]
    on_device = {k: v.cuda().requires_grad_() for k, v in outputs.items() if k != "aux_outputs"}
    on_device["aux_outputs"] = [{k: v.cuda() for k, v in outputs["aux_outputs"][0].items()}]
    cuda_targets = [{k: v.cuda() for k, v in t.items()} for t in targets]
    for (q_cpu, t_cpu), (q, t) in zip(
        HungarianMatcher()(outputs, targets), HungarianMatcher()(on_device, cuda_targets)
    ):
        assert torch.equal(q_cpu, q.cpu()) and torch.equal(t_cpu, t.cpu())

    def weighted(criterion, outputs, targets):  # (loss, terms) from either API: a pair, or terms then .total
        result = criterion(outputs, targets)
        return result if isinstance(result, tuple) else (criterion.total(result), result)

    criterion = SetCriterion(4).cuda()
    loss, terms = weighted(criterion, on_device, cuda_targets)
    expected, _ = weighted(SetCriterion(4), outputs, targets)
    assert loss.device.type == "cuda" and all(v.device.type == "cuda" for v in terms.values())
    assert torch.allclose(loss.cpu(), expected, atol=1e-4)
    loss.backward()
    assert torch.isfinite(on_device["pred_boxes"].grad).all()
    empty = [{"labels": torch.zeros(0, dtype=torch.long, device="cuda"), "boxes": torch.zeros(0, 4, device="cuda")}]
    assert torch.isfinite(weighted(criterion, {k: v[:1] for k, v in on_device.items() if k != "aux_outputs"}, empty)[0])


DDP_SCRIPT = """
import json, sys, torch, lightning as L, zoo
from torch.utils.data import DataLoader, TensorDataset
torch.manual_seed(0)
model = zoo.create("resnet20", channels_last=True)
data = DataLoader(TensorDataset(torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))), batch_size=8)
trainer = L.Trainer(accelerator="gpu", devices=int(sys.argv[1]), strategy="ddp", precision="bf16-mixed", max_steps=2,
                    limit_val_batches=1, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False)
trainer.fit(model, data, data)
total = sum(p.double().sum().item() for p in model.parameters())
with open(f"rank{trainer.global_rank}.json", "w") as f:
    json.dump({"world_size": trainer.world_size, "weights": total, "steps": trainer.global_step}, f)
"""


@pytest.mark.gpu
@needs_cuda
def test_ddp_over_every_visible_gpu(tmp_path) -> None:
    """DDP with one process per visible GPU (one GPU: DDP with 1 process, which this test says)."""
    gpus = torch.cuda.device_count()
    if gpus == 1:
        warnings.warn(
            "1 GPU visible: DDP ran with 1 process (NCCL, one rank); no gradient crossed devices", stacklevel=1
        )
    run_script(tmp_path, "ddp_gpu.py", DDP_SCRIPT, str(gpus))
    ranks = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("rank*.json"))]
    assert len(ranks) == gpus and {r["world_size"] for r in ranks} == {gpus} and {r["steps"] for r in ranks} == {2}
    assert max(r["weights"] for r in ranks) - min(r["weights"] for r in ranks) < 1e-6, "ranks hold different weights"


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", MODELS)
def test_the_same_with_compile(name: str) -> None:
    _train_on_cuda(name, compile=True)


# ---- not a GPU test: the script's dry run on the CPU ----------------------------------------------------------
def test_picks_cover_every_task_and_family_of_the_registry() -> None:
    pairs = {(get_entry(m).task, get_entry(m).family) for m in list_models()}
    assert {(get_entry(m).task, get_entry(m).family) for m in MODELS} == pairs
    assert {"resnet20", "resnet18", "detr_lite", "vit_lite", "vit_ti_16"} <= set(MODELS)
    assert all(
        synthetic(task, get_entry(m).input_size, 3) for task in TASKS for m in MODELS if get_entry(m).task == task
    )


@pytest.mark.slow
def test_gpu_check_dry_run_end_to_end_on_the_cpu(tmp_path, fmnist_root) -> None:
    """``gpu_check.sh 60 --dry-run``: the gpu tests (skipped here), the benchmark, and the first long run stopped
    after an epoch, resumed from its last.ckpt, finished; the rest wait for budget; all of it in $OUT."""
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "GPU_STATE": str(tmp_path / "none"), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "60", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=600,  # ~60 s on a quiet CI machine; a shared one can be many times slower
        env=env,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = (out / "summary.txt").read_text()
    assert "gpu tests: exit 0" in summary, summary
    assert "benchmark: exit 0" in summary and summary.count("RATIO") == 3, summary
    assert "resnet20.fmnist: resuming from resnet20.fmnist/runs/zoo/" in summary, summary
    assert re.search(r"resnet20.fmnist: finished; (wrote|kept) .*resnet20.fmnist", summary), summary
    for later in ("efficientnet_lite.fmnist", "alexnet_lite.fmnist", "swin_lite_conv.fmnist"):
        assert f"{later}: " in summary, later
    files = sorted(out.iterdir())  # what a device returns: at most 8 flat files of 16 MiB
    assert {"gpu_check.log", "summary.txt", "state.tar.part-aa"} <= {p.name for p in files} and len(files) <= 8
    assert all(p.is_file() and p.stat().st_size <= 15 * 2**20 for p in files), files
    parts = b"".join(p.read_bytes() for p in files if p.name.startswith("state.tar.part-"))
    listing = subprocess.run(["tar", "-tvf", "-"], input=parts, capture_output=True).stdout.decode()
    print(listing)
    assert "./resnet20.fmnist/done" in listing and "/checkpoints/last.ckpt" in listing
    assert "./resnet20.fmnist/model_cards/resnet20.fmnist/metrics.json" in listing
