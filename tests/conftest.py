"""Shared fixtures. In CI (CI=true) the real Fashion-MNIST must be present: tests fail instead of skipping."""

from __future__ import annotations

import os

import pytest
from hub_emulator import HubEmulator

import zoo.models  # noqa: F401  registers every family (tests use zoo.registry directly)
from zoo.errors import DatasetNotFoundError


@pytest.fixture(scope="session")
def fmnist_root() -> str | None:
    """The folder the datamodule finds Fashion-MNIST in (None = its default search)."""
    from zoo.data.fashion_mnist import load_split

    try:
        load_split("test")
    except DatasetNotFoundError as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the real dataset: {err}")
        pytest.skip(f"Fashion-MNIST not installed: {err}")
    return None


@pytest.fixture(autouse=True)
def _quiet_threads(monkeypatch):
    """Tests run many small models: one intra-op thread avoids oversubscribing the CI machine's cores."""
    import torch

    torch.set_num_threads(1)
    yield


# ---- an S3-compatible server (tests/s3_server.py, moto) on 127.0.0.1, reached through AWS_ENDPOINT_URL ------------
@pytest.fixture(scope="session")
def s3():
    from s3_server import S3Server

    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3, monkeypatch):
    """The local S3 server's endpoint and test credentials in the environment (here and in subprocesses)."""
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    return s3


# ---- the Hub emulator (tests/hub_emulator.py) as the Hub and the weights mirror ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def hub_server():
    server = HubEmulator().start()
    yield server
    server.stop()


@pytest.fixture
def hub_env(hub_server, tmp_path, monkeypatch):
    """The emulator as the Hub and as the weights mirror, with empty caches, here and in subprocesses."""
    from huggingface_hub import constants

    hf_cache = tmp_path / "hf" / "hub"
    env = {
        "HF_ENDPOINT": hub_server.url,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": str(hf_cache),
        "HF_HUB_DISABLE_XET": "1",  # the emulator speaks regular + LFS uploads, not the xet protocol
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_TOKEN": "hf_emulator_token",
        "ZOO_HOME": str(tmp_path / "zoo"),
        "ZOO_WEIGHTS_MIRROR": hub_server.url,
        "OMP_NUM_THREADS": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("ZOO_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", hub_server.url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub_server.url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_cache))
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hub_server.faults.clear()
    hub_server.reset_counts()
    yield hub_server
    hub_server.faults.clear()
