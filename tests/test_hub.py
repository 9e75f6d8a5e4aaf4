"""Loading from anywhere, caching, offline use, pushing, and safety — against a local Hub emulator.

The real ``huggingface_hub`` client talks to ``tests/hub_emulator.py`` on 127.0.0.1 through
``HF_ENDPOINT``; plain-URL downloads (torchvision's published files) come from the same server through
``ZOO_WEIGHTS_MIRROR``. huggingface_hub reads its environment once, at import: in this process the
fixture sets both the variables (for subprocesses) and the already-read constants.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hub_emulator import Fault

import zoo
from zoo import hub
from zoo.cards import write_folder
from zoo.errors import UnknownModelError, WeightsError
from zoo.files import sha256_file
from zoo.registry import get_entry

REPO_ROOT = Path(__file__).resolve().parents[1]


def _card(folder: Path, seed: int, name: str = "lenet5.fmnist") -> Path:
    """A LeNet-5 weight folder with random weights and a measured (on random data) accuracy."""
    torch.manual_seed(seed)
    model = zoo.create("lenet5").eval()
    images, labels = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    with torch.no_grad():
        accuracy = (model(images).argmax(1) == labels).float().mean().item()
    metrics = {
        "name": name,
        "dataset": "fashion_mnist",
        "test_acc": accuracy,
        "test_samples": 64,
        "recipe": "recipes/lenet5_fmnist.yaml",
    }
    return write_folder(folder / name, model.net.state_dict(), model.model_config(name), metrics)


def _files(root: Path) -> list[str]:
    """Every file under ``root`` except lock files (empty, left by the file lock by design)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


def _run(code: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
        cwd=REPO_ROOT,
        **kwargs,
    )


X = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))


# ---- push / pull round trip ----------------------------------------------------------------------
def test_push_then_load_round_trip_identical_outputs_and_card(hub_env, tmp_path) -> None:
    model = zoo.load(_card(tmp_path, seed=0))
    commit_url = model.push_to_hub("org/lenet", private=True, commit_message="first weights")
    assert "/org/lenet/commit/" in commit_url

    pulled = zoo.load("hf-hub:org/lenet")
    assert torch.equal(pulled(X), model(X))
    assert pulled.class_names == model.class_names and pulled.card_metrics["test_acc"] == model.card_metrics["test_acc"]
    local = model.save_pretrained(tmp_path / "saved")
    remote = Path(pulled.weights_source)
    for name in ("README.md", "config.json", "metrics.json", "model.safetensors"):
        assert (remote / name).read_bytes() == (local / name).read_bytes(), name
    card = (remote / "README.md").read_text()
    assert (
        card.startswith("---\n")
        and card.split("---\n")[1].count("\nlibrary_name: zoo\n") == 1  # in the YAML header (ModelCardData sorts it)
        and "datasets:\n- fashion_mnist" in card
        and "license: apache-2.0" in card
    )
    assert hub_env.repos["org/lenet"].private
    # the CLI pushes a folder as is; from_pretrained takes a bare repo id
    from zoo.cli import main

    main(["push", str(local), "--repo", "org/lenet-cli", "--message", "via cli"])
    assert torch.equal(type(model).from_pretrained("org/lenet-cli")(X), model(X))


def test_push_without_token_is_refused(hub_env, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(
        WeightsError,
        match=r"push of .* to org/anonymous failed: HTTP 401 from http://127\.0\.0\.1:\d+ "
        r"\(log in with `hf auth login` or set HF_TOKEN to a token with write access\)",
    ):
        zoo.push(_card(tmp_path, seed=13), "org/anonymous")
    assert "org/anonymous" not in hub_env.repos


def test_registered_weights_come_from_the_hub_when_not_bundled(hub_env, tmp_path, monkeypatch) -> None:
    """``arch.tag`` with ``hf_hub_id``: a zoo repo, or one published file converted (timm's hf-hub layout)."""
    import torchvision
    from safetensors.torch import save_file

    from zoo import pretrained as weights_module

    monkeypatch.setattr(weights_module, "bundled_cards_dir", lambda: tmp_path / "no-cards")
    model = zoo.load(_card(tmp_path, seed=14))
    model.push_to_hub("org/lenet5-fmnist")
    lenet = get_entry("lenet5")
    monkeypatch.setitem(
        lenet.weights, "fmnist", dataclasses.replace(lenet.weights["fmnist"], hf_hub_id="org/lenet5-fmnist")
    )
    assert [p.name for p in zoo.prefetch("lenet5.fmnist")] == [hub_env.repos["org/lenet5-fmnist"].branches["main"]]
    assert torch.equal(zoo.load("lenet5.fmnist")(X), model(X))

    torch.manual_seed(0)
    reference = torchvision.models.resnet18().eval()
    save_file(reference.state_dict(), str(tmp_path / "model.safetensors"))
    from huggingface_hub import HfApi

    HfApi().create_repo("timmish/resnet18.test")
    HfApi().upload_file(
        path_or_fileobj=str(tmp_path / "model.safetensors"),
        path_in_repo="model.safetensors",
        repo_id="timmish/resnet18.test",
    )
    resnet = get_entry("resnet18")
    published = dataclasses.replace(
        resnet.weights["tv_in1k"],
        tag="hf_test",
        url=None,
        hf_hub_id="timmish/resnet18.test",
        filename="model.safetensors",
        sha256=sha256_file(tmp_path / "model.safetensors"),
    )
    monkeypatch.setitem(resnet.weights, "hf_test", published)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert (
            zoo.load("resnet18.hf_test")(x) - reference((x - IMAGENET_MEAN) / IMAGENET_STD)
        ).abs().max().item() < 1e-5
    monkeypatch.setitem(resnet.weights, "hf_test", dataclasses.replace(published, sha256="0" * 64))
    with pytest.raises(WeightsError, match="expected 000000000000…: the file is corrupt or was tampered with"):
        zoo.load("resnet18.hf_test")


def test_revision_pinning(hub_env, tmp_path) -> None:
    first = zoo.load(_card(tmp_path / "a", seed=1))
    second = zoo.load(_card(tmp_path / "b", seed=2))
    commit_1 = first.push_to_hub("org/pinned").rsplit("/", 1)[1]
    second.push_to_hub("org/pinned", commit_message="better weights")
    first.push_to_hub("org/pinned", revision="v1-branch")
    assert torch.equal(zoo.load(f"hf-hub:org/pinned@{commit_1}")(X), first(X))
    assert torch.equal(zoo.load("hf-hub:org/pinned")(X), second(X))
    assert torch.equal(zoo.load("hf-hub:org/pinned@v1-branch")(X), first(X))
    with pytest.raises(WeightsError, match="org/pinned has no revision 'nope'"):
        zoo.load("hf-hub:org/pinned@nope")
    with pytest.raises(WeightsError, match="hub repository org/absent not found"):
        zoo.load("hf-hub:org/absent")


def test_offline_after_prefetch(hub_env, tmp_path) -> None:
    """``zoo pull`` while online; then a fresh process with HF_HUB_OFFLINE=1 loads from the caches only."""
    from zoo.cli import main

    model = zoo.load(_card(tmp_path, seed=3))
    model.push_to_hub("org/offline")
    data = os.urandom(50_000)
    hub_env.static["/files/extra.bin"] = data
    url = "https://example.org/files/extra.bin"
    main(["pull", "hf-hub:org/offline", url])
    before = sum(hub_env.counts.values())
    code = (
        "import sys, torch, zoo\n"
        "from zoo import hub\n"
        "m = zoo.load('hf-hub:org/offline')\n"
        "torch.save(m(torch.load(sys.argv[1])), sys.argv[2])\n"
        "print(hub.download_url(sys.argv[3]))\n"
        "for source in ('hf-hub:org/never-pulled', 'https://example.org/files/other.bin'):\n"
        "    try:\n"
        "        zoo.load(source, arch='lenet5')\n"
        "    except zoo.WeightsError as err:\n"
        "        print('ERROR', err)\n"
    )
    torch.save(X, tmp_path / "x.pt")
    env_offline = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "x.pt"), str(tmp_path / "y.pt"), url],
        capture_output=True,
        text=True,
        env=env_offline,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert torch.equal(torch.load(tmp_path / "y.pt"), model(X))
    lines = result.stdout.splitlines()
    assert Path(lines[0]).read_bytes() == data
    assert lines[1] == (
        "ERROR org/never-pulled@main/config.json is not in the Hugging Face cache and offline mode is on "
        "(HF_HUB_OFFLINE/ZOO_OFFLINE); run `zoo pull hf-hub:org/never-pulled` while online"
    )
    assert lines[2].startswith("ERROR other.bin is not in the zoo cache (") and lines[2].endswith(
        "and offline mode is on (HF_HUB_OFFLINE/ZOO_OFFLINE); run `zoo pull https://example.org/files/other.bin` while online"
    )
    assert sum(hub_env.counts.values()) == before, "offline mode must not touch the network"


# ---- concurrency and interruption ----------------------------------------------------------------
FETCH = (
    "import os, sys, time\n"
    "from pathlib import Path\n"
    "from zoo import hub\n"
    "kind, source, go = sys.argv[1:4]\n"
    "Path(f'{go}.ready.{os.getpid()}').touch()\n"
    "while not os.path.exists(go):\n"
    "    time.sleep(0.01)\n"
    "path = hub.download_url(source, sha256=sys.argv[4]) if kind == 'url' else hub.hf_folder(source) / 'model.safetensors'\n"
    "print(hub.sha256_file(path))\n"
)


def test_eight_processes_download_once(hub_env, tmp_path) -> None:
    """8 processes start loading the same uncached weights at the same moment: one download each source."""
    model = zoo.load(_card(tmp_path, seed=4))
    model.push_to_hub("org/crowd")
    data = os.urandom(300_000)
    digest = hashlib.sha256(data).hexdigest()
    hub_env.static["/models/crowd-weights.pth"] = data
    # slow bodies (~1 s) so that every process arrives while the first is still downloading
    hub_env.faults["/models/crowd-weights.pth"] = Fault(bytes_per_second=300_000)
    commit = hub_env.repos["org/crowd"].branches["main"]
    hub_env.faults[f"/org/crowd/resolve/{commit}/model.safetensors"] = Fault(bytes_per_second=250_000)
    hub_env.reset_counts()
    for kind, source, expected in (
        ("url", "https://download.example.org/models/crowd-weights.pth", digest),
        ("hf", "org/crowd", model.card_metrics["sha256"]),
    ):
        go = tmp_path / f"go-{kind}"
        procs = [_run(FETCH, kind, source, str(go), digest) for _ in range(8)]
        deadline = time.time() + 60
        while len(list(tmp_path.glob(f"go-{kind}.ready.*"))) < 8 and time.time() < deadline:
            time.sleep(0.05)
        go.touch()
        outputs = [p.communicate(timeout=120) for p in procs]
        assert all(p.returncode == 0 for p in procs), [err[-1500:] for _, err in outputs if err]
        assert {out.strip() for out, _ in outputs} == {expected}
    assert hub_env.downloads("/models/crowd-weights.pth") == 1
    assert hub_env.downloads("/model.safetensors") == 1
    assert _files(tmp_path / "zoo") == [f"weights/{digest}/crowd-weights.pth"]


def test_killed_download_resumes(hub_env, tmp_path) -> None:
    """kill -9 in the middle of a download; the next load finishes it with a Range request."""
    data = os.urandom(3_000_000)
    digest = hashlib.sha256(data).hexdigest()
    hub_env.static["/models/big-weights.pth"] = data
    hub_env.faults["/models/big-weights.pth"] = Fault(bytes_per_second=1_000_000)
    url = "https://download.example.org/models/big-weights.pth"
    go = tmp_path / "go"
    go.touch()
    proc = _run(FETCH, "url", url, str(go), digest)
    part = tmp_path / "zoo" / "weights" / digest / "big-weights.pth.part"
    deadline = time.time() + 60
    while not (part.exists() and part.stat().st_size > 500_000) and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    kept = part.stat().st_size
    assert 0 < kept < len(data) and not part.with_name("big-weights.pth").exists()
    hub_env.faults.clear()
    path = hub.download_url(url, sha256=digest)
    assert path.read_bytes() == data
    assert ("GET", "/models/big-weights.pth", f"bytes={kept}-") in hub_env.log
    assert _files(tmp_path / "zoo") == [f"weights/{digest}/big-weights.pth"]


def test_killed_hub_download_restarts(hub_env, tmp_path) -> None:
    """The same for a hub file. huggingface_hub 2.x downloads into a per-process temporary file, so
    the next load starts over (it does not resume) — and completes."""
    model = zoo.load(_card(tmp_path, seed=15))
    model.push_to_hub("org/killed")
    commit = hub_env.repos["org/killed"].branches["main"]
    path = f"/org/killed/resolve/{commit}/model.safetensors"
    hub_env.faults[path] = Fault(bytes_per_second=100_000)  # ~2.5 s for the 248 kB file
    go = tmp_path / "go"
    go.touch()
    proc = _run(FETCH, "hf", "org/killed", str(go), "")
    deadline = time.time() + 60
    while hub_env.downloads(path) == 0 and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    hub_env.faults.clear()
    assert not (tmp_path / "hf" / "hub" / "models--org--killed" / "snapshots" / commit / "model.safetensors").exists()
    assert torch.equal(zoo.load("hf-hub:org/killed")(X), model(X))
    assert hub_env.downloads(path) == 2


# ---- integrity and failures ----------------------------------------------------------------------
def test_tampered_files_are_refused_and_not_kept(hub_env, tmp_path) -> None:
    data = os.urandom(10_000)
    hub_env.static["/models/w.pth"] = b"tampered" + data[8:]
    url = "https://example.org/models/w.pth"
    expected = hashlib.sha256(data).hexdigest()
    with pytest.raises(
        WeightsError,
        match=r"sha256 of http://127\.0\.0\.1:\d+/models/w\.pth is \w{12}…, expected \w{12}…: "
        r"the file is corrupt or was tampered with; the download was discarded",
    ):
        hub.download_url(url, sha256=expected)
    assert _files(tmp_path / "zoo") == []
    # a good download whose cached copy is modified later: refused at the next load, and removed
    hub_env.static["/models/w.pth"] = data
    path = hub.download_url(url, sha256=expected)
    path.write_bytes(b"x" + data[1:])
    with pytest.raises(
        WeightsError,
        match=r"sha256 of cached .*w\.pth is .*; the cached copy was removed: loading again downloads a fresh one",
    ):
        hub.download_url(url, sha256=expected)
    assert not path.exists()
    assert hub.download_url(url, sha256=expected).read_bytes() == data
    # on the hub: weights changed behind the card's back fail the card's sha256
    model = zoo.load(_card(tmp_path, seed=5))
    model.push_to_hub("org/tampered")
    blob = model.card_metrics["sha256"]
    good = hub_env.blobs[blob]
    hub_env.blobs[blob] = good[:-4] + b"\0\0\0\0"
    with pytest.raises(
        WeightsError,
        match=r"sha256 of org/tampered@\w{12}/model\.safetensors is .*: the file is corrupt or was "
        r"tampered with; the cached copy was removed: loading again downloads a fresh one",
    ):
        zoo.load("hf-hub:org/tampered")
    assert not [p for p in (tmp_path / "hf" / "hub" / "models--org--tampered" / "blobs").iterdir() if p.name == blob]
    hub_env.blobs[blob] = good
    assert torch.equal(zoo.load("hf-hub:org/tampered")(X), model(X))


@pytest.mark.parametrize(
    "fault, message",
    [
        (
            None,
            r"download of http://127\.0\.0\.1:\d+/models/missing\.pth failed: HTTP 404 Not Found \(no file at that address\)",
        ),
        (Fault(status=500), r"failed: HTTP 500 Internal Server Error \(the server failed; try again later\)"),
        (Fault(hang=3.0), r"cannot download http://127\.0\.0\.1:\d+/models/missing\.pth \(timed out\)"),
        (Fault(cut_at=1000), r"(broke off after|stopped at) 1,000"),
    ],
    ids=["404", "500", "timeout", "cut-off"],
)
def test_server_failures_give_clear_errors_and_leave_nothing(hub_env, tmp_path, monkeypatch, fault, message) -> None:
    monkeypatch.setenv("ZOO_DOWNLOAD_TIMEOUT", "1")
    if fault is not None:
        hub_env.static["/models/missing.pth"] = os.urandom(20_000)
        hub_env.faults["/models/missing.pth"] = fault
    with pytest.raises(WeightsError, match=message):
        hub.download_url("https://example.org/models/missing.pth")
    assert _files(tmp_path / "zoo") == []


def test_hub_failures_give_clear_errors(hub_env, tmp_path) -> None:
    from huggingface_hub import HfApi

    HfApi().create_repo("org/not-zoo")
    with pytest.raises(
        WeightsError, match=r"org/not-zoo@main has no config\.json; a zoo repo holds config\.json, model\.safetensors"
    ):
        zoo.load("hf-hub:org/not-zoo")
    zoo.load(_card(tmp_path, seed=6)).push_to_hub("org/flaky")
    hub_env.faults["/org/flaky/resolve/main/config.json"] = Fault(status=403)
    with pytest.raises(
        WeightsError,
        match=r"the hub at http://127\.0\.0\.1:\d+ answered HTTP 403 for org/flaky@main/config\.json; check the repo id",
    ):
        zoo.load("hf-hub:org/flaky")
    hub_env.faults.clear()
    commit = hub_env.repos["org/flaky"].branches["main"]
    hub_env.faults[f"/org/flaky/resolve/{commit}/model.safetensors"] = Fault(cut_at=100, times=10)
    with pytest.raises(WeightsError, match="org/flaky@.*/model.safetensors"):
        zoo.load("hf-hub:org/flaky")
    blobs = [p for p in (tmp_path / "hf" / "hub").rglob("*") if p.is_file() and "blobs" in p.parts]
    assert not [p for p in blobs if p.suffix == ".incomplete" or (len(p.name) == 64 and sha256_file(p) != p.name)]


# ---- ImageNet weights from a published torchvision file ------------------------------------------
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _serve_torchvision(hub_env, monkeypatch, arch: str, *, declare_hash: bool) -> tuple[torch.nn.Module, str]:
    """A randomly initialised torchvision ``arch`` served under the published file name of ``arch.tv_in1k``."""
    import io

    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.get_model(arch).eval()  # random init: the test is about the mechanism
    for module in reference.modules():  # non-trivial BatchNorm statistics, so that they must be carried over
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    buffer = io.BytesIO()
    torch.save(reference.state_dict(), buffer)
    entry = get_entry(arch)
    weights = entry.weights["tv_in1k"]
    path = "/models/" + weights.url.rsplit("/", 1)[1]  # e.g. resnet18-f37072fd.pth
    hub_env.static[path] = buffer.getvalue()
    if declare_hash:  # the served file is not the published one: declare its hash instead of the published prefix
        monkeypatch.setitem(
            entry.weights, "tv_in1k", dataclasses.replace(weights, sha256=hashlib.sha256(buffer.getvalue()).hexdigest())
        )
    return reference, path


def test_imagenet_weights_from_published_torchvision_file(hub_env, monkeypatch, tmp_path) -> None:
    reference, path = _serve_torchvision(hub_env, monkeypatch, "resnet18", declare_hash=True)
    model = zoo.load("resnet18.tv_in1k")
    assert hub_env.downloads(path) == 1
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = reference((x - IMAGENET_MEAN) / IMAGENET_STD)
        assert (model(x) - expected).abs().max().item() < 1e-5
    assert len(model.class_names) == 1000 and model.class_names[1] == "goldfish"
    # a second load comes from the cache; a local copy of the published file loads the same
    zoo.load("resnet18.tv_in1k")
    assert hub_env.downloads(path) == 1
    local = tmp_path / "resnet18-f37072fd.pth"
    local.write_bytes(hub_env.static[path])
    with torch.no_grad():
        assert torch.equal(zoo.load("resnet18.tv_in1k", file=local)(x), model(x))
        # another head size keeps the backbone: same features, fresh 10-class head
        tuned = zoo.load("resnet18.tv_in1k", num_classes=10)
        assert tuned(x).shape == (2, 10)
        assert torch.equal(tuned.net.layer4[1].conv2.weight, model.net.layer4[1].conv2.weight)


def test_imagenet_weights_of_another_family(hub_env, monkeypatch) -> None:
    """The same mechanism for EfficientNet-B0 (the other families' converters are tested in test_families)."""
    reference, _ = _serve_torchvision(hub_env, monkeypatch, "efficientnet_b0", declare_hash=True)
    model = zoo.load("efficientnet_b0.tv_in1k")
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert (model(x) - reference((x - IMAGENET_MEAN) / IMAGENET_STD)).abs().max().item() < 1e-5


def test_published_hash_prefix_is_checked(hub_env, monkeypatch, tmp_path) -> None:
    """torchvision file names carry the start of their sha256: a file that does not match is refused."""
    _serve_torchvision(hub_env, monkeypatch, "resnet18", declare_hash=False)
    with pytest.raises(
        WeightsError,
        match=r"sha256 of http://127\.0\.0\.1:\d+/models/resnet18-f37072fd\.pth is \w{12}…, "
        r"but the published name promises f37072fd…: the file is corrupt or was tampered with",
    ):
        zoo.load("resnet18.tv_in1k")
    assert _files(tmp_path / "zoo") == []


# ---- safe loading --------------------------------------------------------------------------------
class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin", ".ckpt"])
def test_malicious_pickle_is_refused_without_running(tmp_path, suffix) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / f"weights{suffix}"
    torch.save({"features.c1.weight": _Exploit(marker)}, path)
    with pytest.raises(
        WeightsError, match=r"refused to load .*: the pickle asks for more than tensors \(it would call posix\.system\)"
    ):
        zoo.load(str(path), arch="lenet5")
    with pytest.raises(WeightsError, match="refused to load"):
        zoo.load("lenet5.fmnist", file=path)
    assert not marker.exists(), "the pickle's payload ran"


def test_pickled_state_dict_loads_with_weights_only(tmp_path) -> None:
    torch.manual_seed(7)
    model = zoo.create("lenet5").eval()
    torch.save(model.net.state_dict(), tmp_path / "lenet.pth")
    assert torch.equal(zoo.load(str(tmp_path / "lenet.pth"), arch="lenet5")(X), model(X))


def test_config_can_only_name_registered_architectures(tmp_path) -> None:
    folder = _card(tmp_path, seed=8)
    config = json.loads((folder / "config.json").read_text())
    for arch in ("os.system", "torch.nn.Linear"):
        (folder / "config.json").write_text(json.dumps({**config, "architecture": arch}))
        with pytest.raises(UnknownModelError, match=f"unknown model '{arch}'"):
            zoo.load(folder)


def test_mismatched_weights_are_reported_by_name(tmp_path) -> None:
    torch.manual_seed(9)
    state = zoo.create("lenet5").net.state_dict()
    state["head.extra"] = torch.zeros(3)
    del state["features.c3.bias"]
    state["features.c5.weight"] = torch.zeros(100, 16, 5, 5)
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(WeightsError) as err:
        zoo.load(str(tmp_path / "bad.safetensors"), arch="lenet5")
    text = str(err.value)
    assert "missing ['features.c3.bias']" in text and "unexpected ['head.extra']" in text
    assert "features.c5.weight (100, 16, 5, 5)≠(120, 16, 5, 5)" in text


def test_other_num_classes_and_in_chans_adapt_the_weights(tmp_path, caplog) -> None:
    folder = _card(tmp_path, seed=10)
    original = zoo.load(folder)
    with caplog.at_level(logging.INFO, logger="zoo"):
        five = zoo.load(folder, num_classes=5)
        rgb = zoo.load(folder, in_chans=3)
    assert "new 5-class head head.fc.weight, head.fc.bias (the weights have 10 classes)" in caplog.text
    assert "first convolution features.c1.weight adapted from 1 to 3 input channels" in caplog.text
    assert five(X).shape == (3, 5) and five.class_names == [str(i) for i in range(5)]
    assert torch.equal(five.net.features.c3.weight, original.net.features.c3.weight)
    # a grey image repeated into 3 channels gives the same logits as the 1-channel model
    with torch.no_grad():
        assert torch.allclose(rgb.net(X.repeat(1, 3, 1, 1)), original.net(X), atol=1e-5)


def test_single_file_needs_an_architecture(tmp_path) -> None:
    folder = _card(tmp_path, seed=11)
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes((folder / "model.safetensors").read_bytes())
    with pytest.raises(WeightsError, match="lone.safetensors does not say which architecture it holds; pass arch="):
        zoo.load(str(lone))
    assert torch.equal(zoo.load(str(lone), arch="lenet5")(X).argmax(1), zoo.load(folder)(X).argmax(1))


# ---- torch.hub -----------------------------------------------------------------------------------
def test_torch_hub_load_local_clone(tmp_path, monkeypatch) -> None:
    from zoo import pretrained as weights

    if not (weights.bundled_cards_dir() / "lenet5.fmnist").is_dir():  # before the recipe has run in this checkout
        _card(tmp_path, seed=12)
        monkeypatch.setattr(weights, "bundled_cards_dir", lambda: tmp_path)
    model = torch.hub.load(str(REPO_ROOT), "lenet5", source="local", pretrained=True)
    assert model.weights_name == "lenet5.fmnist" and not model.training
    assert torch.equal(model(X), zoo.load("lenet5.fmnist")(X))
    fresh = torch.hub.load(str(REPO_ROOT), "lenet5", source="local", num_classes=3)
    assert fresh(X).shape == (3, 3)


def test_lightning_checkpoint_is_a_source_with_its_model_and_classes(tmp_path) -> None:
    """A zoo task's checkpoint names its architecture and classes in its hyper-parameters: no arch= needed."""
    import lightning as L

    model = zoo.create("lenet5", num_classes=3, class_names=["a", "b", "c"])
    trainer = L.Trainer(
        max_epochs=0, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    loaded = zoo.load(tmp_path / "run.ckpt")
    assert loaded.hparams.model_name == "lenet5" and loaded.class_names == ["a", "b", "c"]
    assert torch.equal(loaded(X), model.eval()(X))


def test_hugging_face_keyword_names(hub_env, tmp_path) -> None:
    """from_pretrained / push_to_hub take huggingface_hub's own names: revision, branch, token, cache_dir,
    local_files_only, force_download."""
    first = zoo.load(_card(tmp_path / "a", seed=21))
    second = zoo.load(_card(tmp_path / "b", seed=22))
    cls = type(first)
    first.push_to_hub("org/hfnames", token=os.environ["HF_TOKEN"])
    second.push_to_hub("org/hfnames", branch="exp", commit_message="on a branch")
    cache = tmp_path / "own-cache"
    assert torch.equal(cls.from_pretrained("org/hfnames", revision="exp", cache_dir=cache)(X), second(X))
    assert torch.equal(cls.from_pretrained("org/hfnames")(X), first(X))
    assert any(cache.rglob("model.safetensors")), "cache_dir= is where the download went"
    served = sum(hub_env.counts.values())
    again = cls.from_pretrained("org/hfnames", revision="exp", cache_dir=cache, local_files_only=True)
    assert torch.equal(again(X), second(X)) and sum(hub_env.counts.values()) == served, "local_files_only: no request"
    cls.from_pretrained("org/hfnames", revision="exp", cache_dir=cache, force_download=True)
    assert sum(hub_env.counts.values()) > served
    with pytest.raises(zoo.ZooError, match="revision= applies to Hub repos"):
        cls.from_pretrained(_card(tmp_path / "c", seed=23), revision="exp")
