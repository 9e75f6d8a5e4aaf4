"""The energy and CO2 of a training run, measured with codecarbon offline (``zoo fit``, ``zoo finetune``).

:class:`EnergyTracker` is a Lightning callback around codecarbon's ``OfflineEmissionsTracker``: it starts
when ``fit`` starts and stops when it ends (or fails), on the main process only. The electricity's carbon
intensity is codecarbon's figure for a country (ISO 3166 alpha-3 code): ``country`` if given, else
``$ZOO_CO2_COUNTRY``, else **FRA** (France, where the course is taught: a low-carbon grid, about 50 g
CO2eq/kWh in codecarbon's table; ``USA`` or ``DEU`` give several times more for the same energy).

What it measures: the CPU's energy (its RAPL counters where the system exposes them, otherwise
codecarbon's estimate from the CPU model's TDP and this process's load), the GPU's (NVML) and the
memory's (a power per GB), for this process (``tracking_mode="process"``: the machine is usually shared).
Offline and local only: no network call (``OfflineEmissionsTracker`` never looks the location up), no
file written (``save_to_file=False``) and no lock file (codecarbon's ``/tmp/.codecarbon.lock``, which
would refuse a second run at the same time; ``allow_multiple_runs=True``). A run resumed from a checkpoint
adds its stretches (the totals travel in the checkpoint, as Lightning's ``Timer`` does with time).

The result goes into ``metrics.json`` as ``energy`` and into the card's front matter as the Hugging Face
Hub's ``co2_eq_emissions`` (emissions in grams, source, training type, location, hardware).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from zoo.errors import InvalidValueError

log = logging.getLogger("zoo")

DEFAULT_COUNTRY = "FRA"
COUNTRY_ENV = "ZOO_CO2_COUNTRY"
_TOTALS = ("energy_kwh", "emissions_kg", "cpu_energy_kwh", "gpu_energy_kwh", "ram_energy_kwh", "duration_s")


def country_code(country: str | None = None) -> str:
    """``country``, else ``$ZOO_CO2_COUNTRY``, else FRA; checked against codecarbon's table (one-line error)."""
    code = (country or os.environ.get(COUNTRY_ENV) or DEFAULT_COUNTRY).strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise InvalidValueError(f"the CO2 country must be an ISO 3166 alpha-3 code such as FRA, DEU, USA; got {code!r}")
    return code


class EnergyTracker(Callback):
    """Measures the energy and CO2 of ``fit`` with codecarbon offline (see the module doc); :meth:`result`."""

    def __init__(self, country: str | None = None, training_type: str = "pre-training", measure_power_secs: float = 15):
        self.country = country_code(country)
        self.training_type = training_type
        self.measure_power_secs = measure_power_secs
        self.totals = dict.fromkeys(_TOTALS, 0.0)
        self.hardware: dict[str, Any] = {}
        self._tracker = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and self._tracker is None:
            try:
                self._tracker = start_tracker(self.country, self.measure_power_secs)
            except ImportError:  # codecarbon comes with the explain extra: without it the card has no energy
                log.info("energy not measured: pip install 'zoo[explain]' for codecarbon")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._stop()

    def _stop(self) -> None:
        tracker, self._tracker = self._tracker, None
        if tracker is None:
            return
        tracker.stop()
        data = tracker.final_emissions_data
        for key, value in (
            ("energy_kwh", data.energy_consumed),
            ("emissions_kg", data.emissions),
            ("cpu_energy_kwh", data.cpu_energy),
            ("gpu_energy_kwh", data.gpu_energy),
            ("ram_energy_kwh", data.ram_energy),
            ("duration_s", data.duration),
        ):
            self.totals[key] += float(value or 0.0)
        self.hardware = dict(
            cpu=f"{data.cpu_model} ({data.cpu_count} cores)",
            gpu=f"{data.gpu_model} ({data.gpu_count})" if data.gpu_count else "",
            country=data.country_name,
        )

    def state_dict(self) -> dict[str, Any]:
        return dict(self.totals)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.totals.update({k: float(v) for k, v in state_dict.items() if k in self.totals})

    def result(self) -> dict[str, Any] | None:
        """``metrics.json``'s ``energy`` entry, or ``None`` when nothing was measured."""
        if not self.hardware:
            return None
        hardware = ", ".join(part for part in (self.hardware["cpu"], self.hardware["gpu"]) if part)
        return dict(
            energy_kwh=_significant(self.totals["energy_kwh"]),
            emissions_g=_significant(1000 * self.totals["emissions_kg"]),
            cpu_energy_kwh=_significant(self.totals["cpu_energy_kwh"]),
            gpu_energy_kwh=_significant(self.totals["gpu_energy_kwh"]),
            ram_energy_kwh=_significant(self.totals["ram_energy_kwh"]),
            duration_s=round(self.totals["duration_s"], 1),
            country=self.country,
            location=self.hardware["country"],
            hardware_used=hardware,
            training_type=self.training_type,
            source="codecarbon (offline, process tracking)",
        )


def _significant(value: float, digits: int = 4) -> float:
    """``value`` to ``digits`` significant figures (a one-minute run emits milligrams, a long one kilograms)."""
    return float(f"{value:.{digits}g}")


def start_tracker(country: str, measure_power_secs: float = 15):
    """A started ``OfflineEmissionsTracker`` that writes nothing and calls no network (see the module doc)."""
    from codecarbon import OfflineEmissionsTracker

    logging.getLogger("codecarbon").setLevel(logging.ERROR)  # its INFO lines would drown the training log
    tracker = OfflineEmissionsTracker(
        country_iso_code=country,
        save_to_file=False,
        save_to_api=False,
        allow_multiple_runs=True,
        tracking_mode="process",
        measure_power_secs=measure_power_secs,
        log_level="error",
    )
    tracker.start()
    return tracker


def energy_of(trainer: Any) -> dict[str, Any]:
    """``{"energy": ...}`` of the trainer's :class:`EnergyTracker`, or ``{}`` (for ``metrics.json``)."""
    for callback in getattr(trainer, "callbacks", []):
        if isinstance(callback, EnergyTracker) and (result := callback.result()):
            return {"energy": result}
    return {}


def with_energy_tracker(callbacks: list, country: str | None = None, training_type: str = "pre-training") -> list:
    """``callbacks`` with an :class:`EnergyTracker` added, unless one is there already."""
    if any(isinstance(callback, EnergyTracker) for callback in callbacks):
        return list(callbacks)
    return [*callbacks, EnergyTracker(country, training_type)]


def co2_eq_emissions(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The Hub's ``co2_eq_emissions`` card metadata from ``metrics.json``'s ``energy`` (``None`` without it)."""
    energy = metrics.get("energy")
    if not isinstance(energy, dict):
        return None
    return dict(
        emissions=energy["emissions_g"],
        source=energy.get("source", "codecarbon"),
        training_type=energy.get("training_type", "pre-training"),
        geographical_location=energy.get("location") or energy.get("country"),
        hardware_used=energy.get("hardware_used"),
    )


def energy_cell(metrics: dict[str, Any]) -> str:
    """``", 12 Wh, 0.6 g CO2eq"`` for the budget tables, or ``""`` for a card without a measurement."""
    energy = metrics.get("energy")
    if not isinstance(energy, dict):
        return ""
    return f", {1000 * energy['energy_kwh']:.3g} Wh, {energy['emissions_g']:.3g} g CO₂eq ({energy['country']})"
