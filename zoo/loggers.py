"""Lightning's CSV logger, resumable: a run resumed with ``--ckpt_path`` appends to its ``metrics.csv``.

Lightning's own writer deletes an existing ``metrics.csv`` when its folder is reused, which would erase
the first stretch of a run that ``zoo fit --ckpt_path runs/zoo/<run>/checkpoints/last.ckpt`` continues in
the same folder. Here the existing header is read back and the new rows are added after the old ones.
"""

from __future__ import annotations

import csv

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class AppendingExperimentWriter(ExperimentWriter):
    """Appends to an existing ``metrics.csv``. A resumed run starts again from its checkpoint's step, so the
    old rows at or after the first step it logs (those of the stretch after the checkpoint, which the run
    now repeats) are dropped then: each step appears once, with the loss of the weights that were kept."""

    resumed = False

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):  # keep the rows, and the columns they have
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = list(csv.DictReader(file).fieldnames or [])
            self.resumed = True

    def log_metrics(self, metrics_dict: dict[str, float], step: int | None = None) -> None:
        if self.resumed and step is not None:
            self.resumed = False
            self._drop_rows_from(int(step))
        super().log_metrics(metrics_dict, step)

    def _drop_rows_from(self, step: int) -> None:
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            reader = csv.DictReader(file)
            fields, rows = list(reader.fieldnames or []), list(reader)
        kept = [row for row in rows if not row.get("step") or float(row["step"]) < step]
        if len(kept) == len(rows):
            return
        with self._fs.open(self.metrics_file_path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=fields)
            writer.writeheader()
            writer.writerows(kept)


class CSVLogger(LightningCSVLogger):
    """``lightning.pytorch.loggers.CSVLogger`` that appends to the metrics of a resumed run."""

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment


def hardware() -> str:
    """A short description of what ran: accelerator, processor, core count, library versions."""
    import os
    import platform

    import lightning
    import torch

    if torch.cuda.is_available():
        device = f"{torch.cuda.device_count()}× {torch.cuda.get_device_name(0)}"
    else:
        cpu = platform.processor() or platform.machine()
        try:
            cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
        device = f"CPU {cpu}, {os.cpu_count()} cores"
    threads = torch.get_num_threads()
    return (
        f"{device}, {threads} thread{'s' if threads != 1 else ''}; "
        f"torch {torch.__version__}, lightning {lightning.__version__}"
    )
