"""The `zoo` command: LightningCLI training that ends in a weight folder, Lightning features, plain commands."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import zoo
from zoo.cli import main
from zoo.files import sha256_file

REPO = Path(__file__).resolve().parents[1]
RECIPE = str(REPO / "recipes" / "lenet5_fmnist.yaml")
SAMPLES = sorted(str(p) for p in (REPO / "samples").glob("*.png"))
QUICK = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=4",
    "--trainer.limit_val_batches=2",
    "--trainer.limit_test_batches=2",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--data.init_args.augment=false",
]


def fit(tmp_path: Path, *extra: str, recipe: str = RECIPE, card: str | None = "lenet5.test") -> Path:
    """Run `zoo fit` in-process inside tmp_path; returns the run folder."""
    args = ["fit", "--config", recipe, *QUICK, "--card.output_dir", str(tmp_path / "cards"), *extra]
    if card:
        args += ["--card.name", card]
    main(args)
    runs = sorted((tmp_path / "runs" / "zoo").iterdir(), key=lambda p: p.stat().st_mtime)
    return runs[-1]


def csv_log(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def in_tmp(tmp_path, monkeypatch, fmnist_root):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ZOO_RUN_VERSION", raising=False)
    return tmp_path


def test_fit_writes_a_complete_card_folder(in_tmp) -> None:
    run = fit(in_tmp)
    folder = in_tmp / "cards" / "lenet5.test"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "metrics.json", "model.safetensors"]
    metrics = json.loads((folder / "metrics.json").read_text())
    for key in (
        "test_acc",
        "test_acc5",
        "val_acc",
        "params",
        "flops",
        "epochs",
        "wall_time_s",
        "hardware",
        "recipe",
        "sha256",
    ):
        assert key in metrics, key
    assert metrics["params"] == 61_706 and metrics["epochs"] == 1
    assert metrics["test_samples"] == 2 * 128  # limit_test_batches=2 of the recipe's batch size
    assert (run / "config.yaml").is_file(), "the resolved config is saved with the run"
    assert (run / "metrics.csv").is_file() and list(run.glob("events.out.tfevents*")), "CSV + TensorBoard logs"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    model = zoo.load(str(folder))
    assert model.class_names[0] == "T-shirt/top"


def test_seeded_runs_are_deterministic(in_tmp) -> None:
    fit(in_tmp, card="lenet5.a")
    fit(in_tmp, card="lenet5.b")
    a = load_file(str(in_tmp / "cards" / "lenet5.a" / "model.safetensors"))
    b = load_file(str(in_tmp / "cards" / "lenet5.b" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_from_last_checkpoint(in_tmp) -> None:
    first = fit(in_tmp, card=None)
    last = first / "checkpoints" / "last.ckpt"
    first_stretch = torch.load(last, weights_only=True)["callbacks"]["Timer"]["time_elapsed"]["train"]
    run = fit(in_tmp, "--trainer.max_epochs=2", f"--ckpt_path={last}", card="lenet5.resumed")
    metrics = json.loads((in_tmp / "cards" / "lenet5.resumed" / "metrics.json").read_text())
    assert metrics["epochs"] == 2
    assert metrics["wall_time_s"] > round(first_stretch, 1) > 0, "the card counts the training time before the resume"
    assert run == first, "a resumed run goes on in its own folder: one log, not two"
    epochs = [int(row["epoch"]) for row in csv_log(run)]
    assert 0 in epochs and 1 in epochs, "the first stretch's rows are kept, the resumed epoch's appended"
    steps = [int(row["step"]) for row in csv_log(run) if row["epoch"] == "1"]
    assert min(steps) >= 4, "the resumed run starts after the first epoch's 4 steps"


def test_last_checkpoint_is_the_last_epoch_even_without_improvement(in_tmp) -> None:
    """lr=0: validation accuracy never improves after epoch 0, yet last.ckpt must hold epoch 2's state."""
    run = fit(in_tmp, "--trainer.max_epochs=3", "--model.init_args.lr=0", card=None)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 2 and ckpt["global_step"] == 12
    assert len(list((run / "checkpoints").glob("best-*.ckpt"))) == 1


def test_gradient_accumulation_counts_optimizer_steps(in_tmp) -> None:
    run = fit(in_tmp, "--trainer.accumulate_grad_batches=2", card=None)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2  # 4 batches, one optimizer step per 2


def test_bf16_mixed_precision_on_cpu(in_tmp) -> None:
    fit(in_tmp, "--trainer.precision=bf16-mixed")
    metrics = json.loads((in_tmp / "cards" / "lenet5.test" / "metrics.json").read_text())
    assert metrics["precision"] == "bf16-mixed"
    confusion = torch.tensor(metrics["confusion_matrix"])  # counted image by image, beside the logged accuracy
    assert confusion.sum() == metrics["test_samples"] == 2 * 128
    assert metrics["test_acc"] == pytest.approx(confusion.trace().item() / 256, abs=1e-6)


@pytest.mark.slow
def test_overfit_one_batch_reaches_full_train_accuracy(in_tmp) -> None:
    recipe = str(REPO / "recipes" / "lenet5_relu_fmnist.yaml")
    run = fit(
        in_tmp,
        "--trainer.overfit_batches=1",
        "--trainer.max_epochs=60",
        "--trainer.limit_train_batches=1.0",
        "--data.init_args.batch_size=64",
        "--model.init_args.optimizer=adam",
        "--model.init_args.lr=0.01",
        "--model.init_args.scheduler=constant",
        "--model.init_args.warmup_epochs=0",
        "--model.init_args.weight_decay=0",
        recipe=recipe,
        card=None,
    )
    accuracies = [float(row["train_acc"]) for row in csv_log(run) if row["train_acc"]]
    assert accuracies[-1] == 1.0, accuracies[-5:]


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(tmp_path, fmnist_root) -> None:
    cmd = [
        sys.executable,
        "-m",
        "zoo.cli",
        "fit",
        "--config",
        RECIPE,
        *QUICK,
        "--trainer.strategy=ddp",
        "--trainer.devices=2",
        "--trainer.accelerator=cpu",
        "--card.name=lenet5.ddp",
        f"--card.output_dir={tmp_path / 'cards'}",
    ]
    result = subprocess.run(
        cmd,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "cards" / "lenet5.ddp" / "metrics.json").read_text())
    assert metrics["devices"] == 2


# ---- plain commands -------------------------------------------------------------------------------
def test_help_lists_every_command(capsys) -> None:
    main(["--help"])
    out = capsys.readouterr().out
    for command in ("fit", "validate", "test", "predict", "list", "info", "classify", "evaluate"):
        assert command in out


def test_fit_help_is_lightning_cli(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["fit", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--trainer.max_epochs" in out and "--card.name" in out


def test_unknown_command_suggests(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["fitt"])
    assert info.value.code == 2
    assert "did you mean 'fit'" in capsys.readouterr().err


def test_list(capsys) -> None:
    main(["list", "lenet*"])
    out = capsys.readouterr().out
    assert "lenet5_relu" in out and "61,706" in out


def test_info_gives_the_real_lenet5_count_and_explains(capsys) -> None:
    main(["info", "lenet5", "--batch-size", "128"])
    out = " ".join(capsys.readouterr().out.split())
    assert "61,706" in out and "60,206" in out
    assert "48,120" in out  # C5, the layer the course's hand count leaves out


def test_list_sets_efficientnet_scaling_side_by_side(capsys) -> None:
    main(["list", "efficientnet_b*", "--flops"])
    rows = {line.split()[1]: line.split() for line in capsys.readouterr().out.splitlines() if "efficientnet_b" in line}
    # model, family, input, params, GFLOPs, φ, depth ×, width ×, resolution, weights (between │ separators)
    b3 = [cell for cell in rows["efficientnet_b3"] if cell != "│"]
    assert b3[3:9] == ["12,233,232", "3.654", "3", "1.4", "1.2", "300"]
    gflops = [float([c for c in rows[f"efficientnet_b{i}"] if c != "│"][4]) for i in range(8)]
    assert gflops == sorted(gflops)  # FLOPs grow with φ


def test_info_alexnet_at_224_and_bad_sizes(capsys) -> None:
    main(["info", "alexnet", "--input-size", "3", "224", "224"])
    out = " ".join(capsys.readouterr().out.split())
    assert "62,378,344" in out and "55×55 39%" in out and "vectors 3% / 94.0%" in out
    for size in (["3", "200", "200"], ["3", "16", "16"]):
        with pytest.raises(SystemExit) as info:
            main(["info", "alexnet" if size[1] == "200" else "vgg16", "--input-size", *size])
        assert info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("zoo: error:") and "\n" not in err


def test_info_unknown_model_is_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["info", "resnet"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("zoo: error: unknown model") and "\n" not in err


def test_classify_shipped_samples(capsys) -> None:
    from zoo.cli.models import classify_files

    predictions = classify_files("lenet5.fmnist", SAMPLES, top_k=2)
    # the samples are named after their true class (fmnist_test_0000_ankle-boot.png)
    truth = [Path(p).stem.split("_", 3)[3] for p in SAMPLES]
    right = sum(top[0][0].lower().replace("/", "-").replace(" ", "-") == t for top, t in zip(predictions, truth))
    assert right >= 8, list(zip(truth, predictions))
    assert all(1 >= top[0][1] >= top[1][1] >= 0 for top in predictions)
    main(["classify", "lenet5.fmnist", *SAMPLES])
    assert capsys.readouterr().out.count("%") == len(SAMPLES)


def test_classify_bad_image_file(tmp_path, capsys) -> None:
    bad = tmp_path / "not-an-image.png"
    bad.write_text("hello")
    with pytest.raises(SystemExit) as info:
        main(["classify", "lenet5.fmnist", str(bad)])
    assert info.value.code == 2
    assert "cannot read image" in capsys.readouterr().err


def test_classify_missing_image_file(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["classify", "lenet5.fmnist", str(tmp_path / "nothere.png")])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("zoo: error: no such image file or folder:") and err.endswith("; check the path")


def test_fit_refuses_to_replace_a_card_before_training(in_tmp, capsys) -> None:
    """A second run with the same --card.name stops before its first step; the card stays byte for byte."""
    fit(in_tmp)
    card = in_tmp / "cards" / "lenet5.test"
    before = {p.name: p.read_bytes() for p in card.iterdir()}
    checkpoints = sorted((in_tmp / "runs").rglob("*.ckpt"))
    with pytest.raises(SystemExit) as exit_info:
        fit(in_tmp)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2 and "already exists" in err and "--card.overwrite true" in err
    assert {p.name: p.read_bytes() for p in card.iterdir()} == before
    assert sorted((in_tmp / "runs").rglob("*.ckpt")) == checkpoints, "refused before the first training step"
    fit(in_tmp, "--card.overwrite=true")
    assert json.loads((card / "metrics.json").read_text())["sha256"] == sha256_file(card / "model.safetensors")


def test_fit_keep_better_replaces_a_card_only_when_the_run_beats_it(in_tmp, caplog) -> None:
    """--card.keep_better: a run that does not beat the card leaves it byte for byte and writes its own card
    into its run folder; a run that beats it replaces it, and its card lists its settings, what it replaced
    and which settings changed."""
    fit(in_tmp)
    card = in_tmp / "cards" / "lenet5.test"
    before = {p.name: p.read_bytes() for p in card.iterdir()}
    with caplog.at_level("INFO", logger="zoo"):
        run = fit(in_tmp, "--card.keep_better=true")  # same seed, same steps: the same score, not better
    assert {p.name: p.read_bytes() for p in card.iterdir()} == before
    beside = run / "cards" / "lenet5.test"
    assert json.loads((beside / "metrics.json").read_text())["sha256"] == sha256_file(beside / "model.safetensors")
    kept = [r.getMessage() for r in caplog.records if "does not beat it" in r.getMessage()]
    assert len(kept) == 1 and kept[0].endswith(str(beside.relative_to(in_tmp))), kept
    metrics = json.loads((card / "metrics.json").read_text())
    assert metrics["training"]["lr"] == 0.05 and metrics["training"]["augment"] is False, metrics["training"]
    assert metrics["training"]["max_epochs"] == 1 and "replaces" not in metrics
    speed = {key: metrics["training"].get(key) for key in ("channels_last", "compile")}
    assert speed == {"channels_last": False, "compile": False}, "the speed switches are recorded too"
    (card / "metrics.json").write_text(json.dumps({**metrics, "test_acc": 0.0}))  # a weaker card to beat
    fit(in_tmp, "--card.keep_better=true", "--model.init_args.lr=0.04")
    new = json.loads((card / "metrics.json").read_text())
    assert new["test_acc"] > 0 and new["sha256"] == sha256_file(card / "model.safetensors")
    # the card says what it replaced and what changed
    assert new["replaces"]["score"] == ["top-1", 0.0] and new["replaces"]["sha256"] == metrics["sha256"]
    text = (card / "README.md").read_text()
    assert "## Training" in text and "| lr | `0.04` |" in text
    assert "These weights replace earlier ones of this name (0.00%, 1 epoch, sha256" in text
    assert "Changed settings: lr `0.05` → `0.04`." in text


def test_fit_from_earlier_weights_records_where_it_started_and_the_whole_budget(in_tmp) -> None:
    """A run with --model.init_args.pretrained (a second cycle from earlier weights) writes what it started from
    into its card: the source's score, sha256, epochs and time, so that the README's budget adds both runs."""
    from zoo.cli.tables import _budget

    fit(in_tmp)  # cards/lenet5.test, one epoch
    source = in_tmp / "cards" / "lenet5.test"
    before = json.loads((source / "metrics.json").read_text())
    fit(in_tmp, "--model.init_args.pretrained", str(source), card="lenet5.test2")
    metrics = json.loads((in_tmp / "cards" / "lenet5.test2" / "metrics.json").read_text())
    start = metrics["started_from"]
    assert start["source"] == str(source) and start["sha256"] == before["sha256"] == sha256_file(
        source / "model.safetensors"
    )
    assert start["score"] == ["top-1", before["test_acc"]] and start["epochs"] == 1 == metrics["epochs"]
    assert metrics["training"]["pretrained"] == str(source)
    text = (in_tmp / "cards" / "lenet5.test2" / "README.md").read_text()
    assert f"| started from | `{source}` ({100 * before['test_acc']:.2f}%, 1 epoch, " in text
    assert f"sha256 `{before['sha256'][:12]}…`" in text
    assert _budget(metrics).startswith("1 + 1 | "), _budget(metrics)
    assert "started_from" not in before and _budget(before).startswith("1 | ")


def test_fit_checks_the_card_name_before_training(in_tmp, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", RECIPE, *QUICK, "--card.output_dir", str(in_tmp / "cards"), "--card.name", "lenet5"])
    assert exit_info.value.code == 2 and "--card.name must be 'lenet5.<tag>'" in capsys.readouterr().err
    assert not (in_tmp / "runs").exists() or not list((in_tmp / "runs").rglob("*.ckpt"))


def test_version(capsys) -> None:
    main(["--version"])
    assert capsys.readouterr().out.strip() == f"zoo {zoo.__version__}"


def run_script(tmp_path: Path, name: str, code: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``code`` as ``tmp_path/name`` in a fresh interpreter (one thread per process); it must succeed."""
    script = tmp_path / name
    script.write_text(code)
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, str(script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run


DDP_TEST = """
import sys, lightning as L, zoo
from zoo.data import FashionMNISTDataModule
model = zoo.load("lenet5.fmnist")
trainer = L.Trainer(accelerator="cpu", strategy="ddp", devices=int(sys.argv[1]), logger=False, enable_progress_bar=False,
                    enable_model_summary=False, enable_checkpointing=False)
result = trainer.test(model, datamodule=FashionMNISTDataModule(batch_size=500, download=False), verbose=False)[0]
if trainer.is_global_zero:
    print("RESULT", repr(result["test_acc"]), int(model.confusion_matrix.sum()), flush=True)
if trainer.world_size > 1:  # leave together: a rank exiting while gloo still talks aborts the others
    import torch.distributed as dist
    dist.barrier()
    dist.destroy_process_group()
"""


@pytest.mark.slow
def test_ddp_test_counts_every_image_once(tmp_path, fmnist_root) -> None:
    """3 processes and 10,000 images (not a multiple of 3): the same accuracy as 1 process, to the last digit."""
    results = []
    for devices in (1, 3):
        run = run_script(tmp_path, "ddp_test.py", DDP_TEST, str(devices))
        results.append(next(line for line in run.stdout.splitlines() if line.startswith("RESULT")))
    assert results[0] == results[1] and results[1].endswith(" 10000"), results


@pytest.mark.parametrize(("rule", "factor"), [("none", 1.0), ("linear", 2.0), ("sqrt", 2.0**0.5)])
def test_lr_scales_with_the_global_batch(in_tmp, rule: str, factor: float, caplog) -> None:
    """Batch 128 × accumulation 4 = 512 images per step, against a reference of 256: the optimiser's lr."""
    from zoo.cli.recipe import run_lightning

    caplog.set_level("INFO", logger="zoo")
    cli = run_lightning(
        [
            "fit",
            "--config",
            RECIPE,
            *QUICK,
            "--trainer.accumulate_grad_batches=4",
            f"--model.init_args.lr_scale={rule}",
            "--model.init_args.lr_reference_batch=256",
            "--model.init_args.scheduler=constant",
            "--model.init_args.warmup_epochs=0",
        ]
    )
    assert cli.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(cli.model.hparams.lr * factor)
    assert "global batch 512 = 128 per device × 1 process(es) × 4 accumulation" in caplog.text


def test_a_run_bounded_by_max_steps_knows_its_batch(in_tmp, caplog) -> None:
    """With --trainer.max_steps alone Lightning never loads the training loader before the optimiser."""
    from zoo.cli.recipe import run_lightning

    caplog.set_level("INFO", logger="zoo")
    argv = [
        "fit",
        "--config",
        RECIPE,
        "--trainer.max_epochs=-1",
        "--trainer.max_steps=2",
        "--trainer.limit_val_batches=1",
    ]
    cli = run_lightning([*argv, "--model.init_args.lr_scale=linear", "--model.init_args.lr_reference_batch=64"])
    assert "global batch 128 = 128 per device" in caplog.text
    assert all(
        g["initial_lr"] == pytest.approx(cli.model.hparams.lr * 2) for g in cli.trainer.optimizers[0].param_groups
    )


def test_slurm_script_zoo_line_is_a_valid_fit_command(capsys, monkeypatch) -> None:
    """The sbatch file's `srun zoo fit ...` line parses as `zoo fit` (printed config, no training), and its
    --nodes / --ntasks-per-node agree with --trainer.num_nodes / --trainer.devices."""
    import shlex

    script = (REPO / "recipes" / "slurm" / "zoo_fit.sbatch").read_text()
    line = next(line for line in script.splitlines() if line.startswith("srun zoo "))
    argv = shlex.split(line)[2:]
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as info:
        main([*argv, "--print_config"])
    assert info.value.code in (0, None)
    import yaml

    config = yaml.safe_load(capsys.readouterr().out)
    nodes = int(script.split("--nodes=")[1].split()[0])
    tasks = int(script.split("--ntasks-per-node=")[1].split()[0])
    assert (config["trainer"]["num_nodes"], int(config["trainer"]["devices"])) == (nodes, tasks)
    assert config["model"]["init_args"]["lr_scale"] == "linear" and config["trainer"]["strategy"] == "ddp"


EQUIVALENCE = """
import sys, torch, lightning as L, zoo
from zoo.data import FashionMNISTDataModule
from zoo.plugins import SyncBatchNormAnyDevice
devices, batch, out, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
L.seed_everything(0)
model = zoo.create(name, lr=0.1, momentum=0.0, weight_decay=0.0)
data = FashionMNISTDataModule(batch_size=batch, augment=False, shuffle=False, download=False)
sync = dict(sync_batchnorm=True, plugins=[SyncBatchNormAnyDevice()]) if devices > 1 else {}
trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", max_steps=6,
                    logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, limit_val_batches=0, deterministic=True, precision="64-true", **sync)
trainer.fit(model, datamodule=data)
if trainer.is_global_zero:
    assert name != "resnet20" or type(model.net.bn1) is torch.nn.BatchNorm2d, "the plain BatchNorm is back after fit"
    torch.save(model.net.state_dict(), out)
if devices > 1:  # leave together: a rank exiting while gloo still talks aborts the others
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lenet5", "resnet20"])
def test_two_ddp_processes_at_half_the_batch_train_the_same_weights(tmp_path, fmnist_root, name) -> None:
    """6 SGD steps from one seed, no augmentation: 1 process at batch 64 and 2 DDP processes at 32 each end
    with the same weights (the averaged gradient is the mean over the same 64 images). ResNet-20's
    BatchNorm sees the global batch through sync_batchnorm on CPU processes (zoo.plugins), running
    statistics included; without it each process would normalise its own 32 images.

    In float64, so that "the same" can be tight: in float32 the sums' different order leaves ~0.3% of
    the first update of ResNet-20's stem different (rounding, amplified through its BatchNorms at init);
    in float64 every weight agrees to 1e-12."""
    for devices, batch in ((1, 64), (2, 32)):
        out = str(tmp_path / f"{devices}.pt")
        run_script(tmp_path, "equivalence.py", EQUIVALENCE, str(devices), str(batch), out, name)
    one, two = (torch.load(tmp_path / f"{d}.pt", weights_only=True) for d in (1, 2))
    start = zoo.create(name).net.state_dict()
    assert any(not torch.allclose(one[k].float(), start[k].float()) for k in one), "training moved the weights"
    for key in one:
        assert torch.allclose(one[key].double(), two[key].double(), atol=1e-10, rtol=1e-8), key


def test_zoo_fit_sync_batchnorm_uses_the_plugin_that_runs_on_cpu(tmp_path, monkeypatch) -> None:
    """``--trainer.sync_batchnorm true`` reaches the Trainer with :class:`SyncBatchNormAnyDevice` (PyTorch's
    SyncBatchNorm on GPUs, the zoo's cross-process BatchNorm on CPU processes, which DDP otherwise refuses).
    Converting keeps the very parameters and buffers (the optimizer's) and, in one process, the outputs;
    reverting puts back BatchNorm2d."""
    from zoo.cli.recipe import _make_cli_class
    from zoo.layers.sync_batchnorm import CrossProcessBatchNorm
    from zoo.plugins import SyncBatchNormAnyDevice

    monkeypatch.chdir(tmp_path)
    ZooCLI, _, _ = _make_cli_class()
    args = ["--config", RECIPE, "--trainer.sync_batchnorm=true", "--trainer.logger=false", "--card.name=null"]
    from zoo.tasks.base import ZooTask

    cli = ZooCLI(ZooTask, None, subclass_mode_model=True, subclass_mode_data=True, args=args, run=False)
    assert isinstance(cli.trainer._accelerator_connector._layer_sync, SyncBatchNormAnyDevice)

    torch.manual_seed(0)
    net = zoo.create("resnet20").net.train()
    x = torch.rand(4, 1, 28, 28)
    tensors = {id(t) for t in [*net.parameters(), *net.buffers()]}
    count = sum(type(m) is torch.nn.BatchNorm2d for m in net.modules())
    expected = net(x)
    plugin = SyncBatchNormAnyDevice()
    converted = plugin.apply(net)  # no trainer attached: a CPU model
    assert count > 0 and sum(isinstance(m, CrossProcessBatchNorm) for m in converted.modules()) == count
    assert {id(t) for t in [*converted.parameters(), *converted.buffers()]} == tensors
    assert torch.allclose(converted(x), expected, atol=1e-6)
    back = plugin.revert(converted)
    norms = [m for m in back.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(norms) == count and all(type(m) is torch.nn.BatchNorm2d for m in norms)
    assert {id(t) for t in [*back.parameters(), *back.buffers()]} == tensors


@pytest.mark.slow
def test_two_nodes_with_torchrun_then_resume_on_one(tmp_path, fmnist_root) -> None:
    """Two `torchrun --nnodes 2` launches on this machine run one `zoo fit --trainer.num_nodes 2`: one card,
    one run folder with one checkpoint folder; the run then resumes from its last.ckpt on a single process."""
    import os
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fit_args = [
        "fit",
        "--config",
        RECIPE,
        *QUICK,
        "--trainer.accelerator=cpu",
        "--trainer.num_nodes=2",
        "--trainer.devices=1",
        "--trainer.strategy=ddp",
        "--card.name=lenet5.nodes",
        f"--card.output_dir={tmp_path / 'cards'}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("ZOO_RUN_VERSION", None)
    launches = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes=2",
                "--nproc-per-node=1",
                f"--node-rank={rank}",
                "--master-addr=127.0.0.1",
                f"--master-port={port}",
                "-m",
                "zoo.cli",
                *fit_args,
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [launch.communicate(timeout=300) for launch in launches]
    assert all(launch.returncode == 0 for launch in launches), [err[-2000:] for _, err in outputs]
    assert [p.name for p in (tmp_path / "cards").iterdir()] == ["lenet5.nodes"]
    metrics = json.loads((tmp_path / "cards" / "lenet5.nodes" / "metrics.json").read_text())
    assert metrics["devices"] == 1 and metrics["epochs"] == 1
    runs = [p for p in (tmp_path / "runs" / "zoo").iterdir() if (p / "checkpoints").is_dir()]
    assert len(runs) == 1, "one checkpoint folder, written by rank 0"
    last = runs[0] / "checkpoints" / "last.ckpt"
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "zoo.cli",
            "fit",
            "--config",
            RECIPE,
            *QUICK,
            "--trainer.max_epochs=2",
            f"--ckpt_path={last}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert torch.load(last, weights_only=False)["epoch"] == 1, "the 2-process checkpoint resumed on 1 process"


SAMPLING = """
import json, sys, torch, lightning as L, zoo
from zoo.data import FashionMNISTDataModule

class Record(L.Callback):
    def on_train_epoch_start(self, trainer, module):
        sampler = trainer.train_dataloader.sampler
        indices = list(iter(sampler))
        draw = torch.rand(1).item()  # the next number the augmentation would use on this rank
        json.dump({"indices": indices, "draw": draw}, open(f"{sys.argv[1]}/rank{trainer.global_rank}.json", "w"))

L.seed_everything(0)
trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=1, logger=False, callbacks=[Record()],
                    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
trainer.fit(zoo.create("lenet5"), datamodule=FashionMNISTDataModule(augment=True, download=False))
torch.distributed.barrier()  # leave together: a rank exiting while gloo still talks aborts the others
torch.distributed.destroy_process_group()
"""


@pytest.mark.slow
def test_ddp_ranks_see_every_image_once_with_their_own_augmentation(tmp_path, fmnist_root) -> None:
    run_script(tmp_path, "sampling.py", SAMPLING, str(tmp_path))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    seen = ranks[0]["indices"] + ranks[1]["indices"]
    assert sorted(seen) == list(range(55_000)), "the epoch's 55,000 training images, each on exactly one rank"
    assert ranks[0]["draw"] != ranks[1]["draw"], "each rank draws its own crops, flips and erasures"


@pytest.mark.parametrize("recipe", sorted(p.name for p in (REPO / "recipes").glob("*.yaml")))
def test_every_shipped_recipe_parses_and_names_a_registered_model(recipe: str, capsys, monkeypatch) -> None:
    """Each recipe in recipes/ is a valid `zoo fit` config (printed, nothing trained) for a registered
    architecture, and the weights it writes are registered ones (or none)."""
    import yaml

    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", f"recipes/{recipe}", "--print_config"])
    assert info.value.code in (0, None)
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["init_args"]["model_name"] in zoo.list_models()
    card = (config.get("card") or {}).get("name")
    assert card is None or card in zoo.list_weights(), f"{recipe} writes {card}, which the registry does not list"
