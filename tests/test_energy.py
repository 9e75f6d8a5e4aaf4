"""Energy and CO2 of training (zoo.energy): a real zoo fit's card carries the Hub's co2_eq_emissions, measured
offline by codecarbon (no network, no file outside the run folder), the emissions being its energy times the
country's carbon intensity in codecarbon's own table."""

from __future__ import annotations

import json
import socket
import tempfile
from pathlib import Path

import pytest
import yaml

from zoo.cli import main
from zoo.energy import DEFAULT_COUNTRY, EnergyTracker, co2_eq_emissions, country_code, energy_cell
from zoo.errors import InvalidValueError

REPO = Path(__file__).resolve().parents[1]
QUICK = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=4",
    "--trainer.limit_val_batches=2",
    "--trainer.limit_test_batches=2",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--data.init_args.augment=false",
]


def _front_matter(card: Path) -> dict:
    text = card.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def _no_network(monkeypatch) -> list:
    calls: list = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return calls


def test_a_new_card_carries_its_co2_eq_emissions(tmp_path, monkeypatch, fmnist_root) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ZOO_RUN_VERSION", raising=False)
    calls = _no_network(monkeypatch)
    lock = Path(tempfile.gettempdir()) / ".codecarbon.lock"
    before = set(Path(tempfile.gettempdir()).iterdir())
    recipe = str(REPO / "recipes" / "lenet5_fmnist.yaml")
    cards = str(tmp_path / "cards")
    main(
        [
            "fit",
            "--config",
            recipe,
            *QUICK,
            "--card.output_dir",
            cards,
            "--card.name",
            "lenet5.de",
            "--energy.country",
            "DEU",
        ]
    )
    assert not calls, f"codecarbon tried the network: {calls}"
    assert not lock.exists() and not [
        p for p in set(Path(tempfile.gettempdir()).iterdir()) - before if "carbon" in p.name
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cards", "runs"]  # nothing beside the run and the cards
    from codecarbon.input import DataSource

    intensity = DataSource().get_global_energy_mix_data()  # g CO2eq per kWh, by country
    for name, country, location in (("lenet5.de", "DEU", "Germany"),):
        folder = tmp_path / "cards" / name
        energy = json.loads((folder / "metrics.json").read_text())["energy"]
        co2 = _front_matter(folder / "README.md")["co2_eq_emissions"]
        assert co2 == {
            "emissions": energy["emissions_g"],
            "source": "codecarbon (offline, process tracking)",
            "training_type": "pre-training",
            "geographical_location": location,
            "hardware_used": energy["hardware_used"],
        }
        assert energy["country"] == country and energy["energy_kwh"] > 0 and energy["duration_s"] > 0
        parts = energy["cpu_energy_kwh"] + energy["gpu_energy_kwh"] + energy["ram_energy_kwh"]
        assert energy["energy_kwh"] == pytest.approx(parts, rel=1e-3, abs=2e-6)
        expected_g = energy["energy_kwh"] * intensity[country]["carbon_intensity"]
        assert energy["emissions_g"] == pytest.approx(expected_g, rel=0.02, abs=2e-3)


def test_country_code_default_environment_and_refusal(monkeypatch) -> None:
    monkeypatch.delenv("ZOO_CO2_COUNTRY", raising=False)
    assert country_code() == "FRA" == DEFAULT_COUNTRY
    monkeypatch.setenv("ZOO_CO2_COUNTRY", "usa")
    assert country_code() == "USA" and country_code("deu") == "DEU"
    with pytest.raises(InvalidValueError, match="alpha-3"):
        EnergyTracker("France")


def test_resumed_runs_add_their_stretches_and_cards_without_energy_stay_as_they_were() -> None:
    tracker = EnergyTracker("FRA")
    tracker.load_state_dict({"energy_kwh": 0.5, "emissions_kg": 0.02, "duration_s": 60.0})
    assert tracker.state_dict()["energy_kwh"] == 0.5 and tracker.result() is None  # nothing measured in this process
    assert co2_eq_emissions({"test_acc": 0.9}) is None and energy_cell({"test_acc": 0.9}) == ""
    metrics = {"energy": {"energy_kwh": 0.0123, "emissions_g": 0.69, "country": "FRA"}}
    assert energy_cell(metrics) == ", 12.3 Wh, 0.69 g CO₂eq (FRA)"


def test_cards_carry_co2_eq_emissions_exactly_when_they_measured_energy() -> None:
    from zoo.cards import render_card

    for folder in sorted((REPO / "model_cards").iterdir()):
        config = json.loads((folder / "config.json").read_text())
        metrics = json.loads((folder / "metrics.json").read_text())
        card = render_card(config, metrics)
        assert ("co2_eq_emissions" in card) == ("energy" in metrics), folder.name
        if "energy" in metrics:  # trained since: its front matter as written
            assert _front_matter(folder / "README.md")["co2_eq_emissions"] == co2_eq_emissions(metrics)
