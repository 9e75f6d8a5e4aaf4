"""A task's weights out of Python: ``config.json``, ``save_pretrained`` (the weight folder) and ``push_to_hub``.

Mixed into :class:`~zoo.tasks.base.ZooTask`: it reads the task's ``hparams``, ``net``, ``class_names``,
``card_metrics`` and preprocessing, and hands them to :mod:`zoo.cards` (which renders and writes) and
:mod:`zoo.pretrained` (which checks and uploads).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

from torch import Tensor

from zoo import pretrained


class Publishing:
    """``model_config``, ``save_pretrained``, ``weights_sha256``, ``push_to_hub`` of a zoo task."""

    def model_config(self, name: str) -> dict[str, Any]:
        """``config.json``: enough to rebuild this task from the registry alone."""
        hp = self.hparams
        config = {
            "name": name,
            "architecture": hp.model_name,
            "library_name": "zoo",
            "task": self.description.pipeline,
            "num_classes": hp.num_classes,
            "in_chans": self.input_size[0],
            "input_size": list(self.input_size),
            "mean": self.mean.flatten().tolist(),
            "std": self.std.flatten().tolist(),
            "class_names": list(self.class_names),
            "model_kwargs": dict(hp.model_kwargs or {}),
            **({"preprocessing": dict(self.preprocessing)} if self.preprocessing else {}),
        }
        extend = getattr(self.net, "hub_config", None)  # a timm network: timm's layout too (timm.create_model reads it)
        return extend(config) if callable(extend) else config

    def save_pretrained(
        self,
        save_directory: str | Path,
        *,
        name: str | None = None,
        metrics: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> Path:
        """Write ``model.safetensors`` + ``config.json`` + ``metrics.json`` + ``README.md`` (the card).

        ``metrics``: numbers just measured for these weights (a training run's). Without them, the numbers
        measured for the loaded weights travel with them only while the weights are unchanged (same
        sha256); after fine-tuning, only what still holds (dataset, license...) is kept.

        An existing weight folder is replaced whole; a folder holding other files, or a file, is refused
        before anything is written (``overwrite=True`` adds the weight files beside the others).
        """

        from zoo.cards import check_target, write_folder
        from zoo.layer_table import count_flops

        check_target(Path(save_directory).expanduser(), overwrite=overwrite)  # before any work
        name = name or self.weights_name or self.hparams.model_name
        state = self._weights_state()
        if metrics is None:
            metrics = dict(self.card_metrics or {})
            if metrics.get("sha256") != self.weights_sha256():
                metrics = {k: metrics[k] for k in pretrained.DESCRIPTIVE_METRICS if k in metrics}
        metrics = {"name": name, **{k: v for k, v in metrics.items() if k != "name"}}
        metrics["params"] = sum(p.numel() for p in self.net.parameters())
        metrics["flops"] = count_flops(self.net, self.input_size)
        return write_folder(
            Path(save_directory).expanduser(), state, self.model_config(name), metrics, overwrite=overwrite
        )

    def _weights_state(self) -> dict[str, Tensor]:
        return {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}

    def weights_sha256(self) -> str:
        """The sha256 of ``model.safetensors`` as :meth:`save_pretrained` would write it now."""
        from safetensors.torch import save

        return hashlib.sha256(save(self._weights_state(), metadata={"format": "pt"})).hexdigest()

    def push_to_hub(
        self,
        repo_id: str,
        *,
        branch: str | None = None,
        create_pr: bool = False,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str | None = None,
        revision: str | None = None,
    ) -> str:
        """:meth:`save_pretrained` into a temporary folder, then push it; returns the commit URL.

        ``huggingface_hub``'s names: ``branch`` (created from ``main`` if needed; ``revision`` is the same),
        ``create_pr`` (open a pull request instead of committing), ``private``, ``token``, ``commit_message``.
        """
        with tempfile.TemporaryDirectory(prefix="zoo-push-") as tmp:
            folder = self.save_pretrained(Path(tmp) / "model")
            return pretrained.push(
                folder,
                repo_id,
                private=private,
                revision=branch or revision,
                commit_message=commit_message,
                token=token,
                create_pr=create_pr,
            )
