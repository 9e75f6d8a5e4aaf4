"""A plain (non-editable) install carries the shipped weights: zoo.load finds them inside the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_cards_and_loads_them(tmp_path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next((tmp_path / "dist").glob("zoo-*.whl"))
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    assert (site / "zoo" / "model_cards" / "lenet5.fmnist" / "model.safetensors").is_file()
    assert (site / "zoo" / "catalog.json").is_file(), "zoo list reads the catalog"
    code = (
        "import zoo, torch; from zoo.files import bundled_cards_dir; m = zoo.load('lenet5.fmnist'); "
        "print(zoo.__file__, bundled_cards_dir(), m.predict_proba(torch.rand(1, 1, 28, 28)).shape)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    assert str(site / "zoo" / "__init__.py") in out and str(site / "zoo" / "model_cards") in out
