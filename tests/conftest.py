"""Shared fixtures. In CI (CI=true) the real Fashion-MNIST must be present: tests fail instead of skipping."""

from __future__ import annotations

import os

import pytest

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
