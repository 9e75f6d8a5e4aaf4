"""Every timm architecture as a zoo model: ``timm/<name>`` in the registry, a thin adapter, timm's configs read.

    zoo.create("timm/convnext_tiny", num_classes=5, drop_path_rate=0.1)   # a zoo task around timm's network
    zoo.load("timm/convnext_tiny.fb_in1k")          # timm's Hub repo, through zoo's cache / offline / sha256
    zoo.load("hf-hub:timm/convnext_tiny.fb_in1k")   # the same repo by its Hub id

Names are resolved on lookup (:func:`zoo.registry.register_resolver`): importing the zoo neither imports
timm nor enumerates its catalogue. :class:`TimmNetwork` is a thin adapter around what ``timm.create_model``
returns (``.model``): ``forward``, ``forward_features``/``forward_head``, ``get_classifier``/``reset_classifier``,
``num_features``, ``feature_info`` and ``no_weight_decay`` are timm's, and its state dict has timm's keys (no
``model.`` prefix), so a zoo folder of it is a timm folder too. What the adapter adds:

* ``stages()`` from timm's ``group_matcher(coarse=False)`` (the groups timm's own layer decay uses): the stem,
  one group per block, and ``head`` (the classifier's group and any after it);
* ``no_weight_decay()`` keeping the names that are parameters of this instance (timm lists ``dist_token``
  for every ViT);
* ``input_size`` / ``fixed_input_size`` from timm's model traits; :meth:`TimmNetwork.pyramid` for
  :func:`zoo.backbone` (timm's ``FeatureGetterNet`` over ``forward_intermediates``, with ``feature_info``);
* :meth:`TimmNetwork.hub_config`: ``config.json`` in timm's layout (``save_config_for_hf``: architecture,
  ``pretrained_cfg``, ``model_args``) with zoo's keys beside it, so ``timm.create_model("hf-hub:<repo>")``
  loads a pushed zoo folder.

A ``config.json`` with a ``pretrained_cfg`` mapping is timm's layout: :func:`config_task_args` reads it (zoo's
keys first, where a zoo folder has them), and :func:`preprocessing` turns its ``input_size``/``crop_pct``/
``crop_mode``/``interpolation`` into the task's ``transforms()`` (equal to timm's ``resolve_data_config`` +
``create_transform``).
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from zoo.errors import UnknownArgumentError, UnknownModelError, WeightsError
from zoo.layers.features import FeatureExtractor
from zoo.layers.network import Network
from zoo.layers.pixels import Normalize
from zoo.registry import ModelEntry, Weights, get_entry, register_resolver

PREFIX = "timm/"


# ---- names -----------------------------------------------------------------------------------------
def _cfg(name: str) -> dict[str, Any]:
    """timm's ``pretrained_cfg`` of ``arch`` (its default tag) or ``arch.tag``, as a plain dict."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name, allow_unregistered=True)
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg or {})


def _first(value: Any) -> str:
    """timm names one module, or a tuple of them (a distilled ViT's two heads): the first."""
    return (value[0] if value else "") if isinstance(value, (tuple, list)) else (value or "")


def resolve_entry(name: str) -> ModelEntry:
    """The registry entry of ``timm/<arch>``, from timm's own registry (nothing is downloaded)."""
    import timm

    arch = name.removeprefix(PREFIX)
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=4, cutoff=0.6)
        hint = f"closest: {', '.join(PREFIX + c for c in close)}" if close else "see `zoo list --timm 'pattern*'`"
        raise UnknownModelError(f"unknown model {name!r}: timm has no architecture {arch!r}; {hint}")
    cfg = _cfg(arch)
    weights = {}
    for full in timm.list_pretrained(f"{arch}.*"):
        tag = full.partition(".")[2]
        tagged = _cfg(full)
        if tagged.get("hf_hub_filename"):  # another library's file (open_clip): not a timm state dict
            continue
        source = {"hf_hub_id": tagged["hf_hub_id"]} if tagged.get("hf_hub_id") else {"url": tagged.get("url")}
        if not any(source.values()):
            continue
        weights[tag] = Weights(
            tag=tag,
            dataset=tag.rpartition("_")[2] or tag,
            license=tagged.get("license") or "see the timm model card",
            origin="timm",
            num_classes=tagged.get("num_classes"),
            input_size=tuple(tagged["input_size"]),
            mean=tuple(tagged["mean"]),
            std=tuple(tagged["std"]),
            **_preprocessing_or_none(tagged),
            **source,
        )
    return ModelEntry(
        name=PREFIX + arch,
        builder=_builder(arch),
        family="timm",
        input_size=tuple(cfg.get("input_size", (3, 224, 224))),
        num_classes=int(cfg.get("num_classes") or 1000),
        first_conv=_first(cfg.get("first_conv")),
        classifier=_first(cfg.get("classifier")),
        fixed_input_size=bool(cfg.get("fixed_input_size", False)),
        mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
        paper=", ".join(cfg.get("paper_ids") or ()) if isinstance(cfg.get("paper_ids"), (list, tuple)) else "",
        weights=weights,
    )


def list_timm(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """timm's architecture names (``pretrained``: its ``arch.tag`` weights) matching ``pattern``, prefixed."""
    import timm

    pattern = pattern.removeprefix(PREFIX)
    names = timm.list_pretrained(pattern) if pretrained else timm.list_models(pattern)
    return [PREFIX + name for name in names]


# ---- the network -----------------------------------------------------------------------------------
def _builder(arch: str):
    def build(*, num_classes: int, in_chans: int, **kwargs: Any) -> nn.Module:
        import timm

        try:
            net = timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)
        except TypeError as err:
            if "unexpected keyword argument" not in str(err):
                raise
            raise UnknownArgumentError(f"{PREFIX}{arch}: {str(err).splitlines()[0]} (timm.create_model's)") from None
        return TimmNetwork(net, in_chans)

    build.__name__ = build.__qualname__ = PREFIX + arch
    build.takes_timm_names = True  # drop_rate / drop_path_rate are timm's own arguments here
    return build


class _Params(nn.Module):
    """Parameters that sit directly on a module split between stages (a ViT's ``cls_token``), as a module of
    their own: the stage's ``parameters()`` and the fine-tuning freeze see them; the network does not own it."""

    def __init__(self, params: dict[str, nn.Parameter]) -> None:
        super().__init__()
        for name, param in params.items():
            self._parameters[name.replace(".", "_")] = param


def _timm_keys(module: nn.Module, state: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    """State-dict hook: ``<prefix>model.<key>`` → ``<prefix><key>``, timm's own keys."""
    inner = prefix + "model."
    for key in [k for k in state if k.startswith(inner)]:
        state[prefix + key[len(inner) :]] = state.pop(key)


def _wrapped_keys(module: nn.Module, state: dict[str, Any], prefix: str, *args: Any) -> None:
    """Load pre-hook: timm's keys under ``prefix`` → the wrapped model's (``<prefix>model.<key>``)."""
    inner = prefix + "model."
    for key in [k for k in state if k.startswith(prefix) and not k.startswith(inner)]:
        state[inner + key[len(prefix) :]] = state.pop(key)


class TimmNetwork(Network):
    """A timm network with the zoo's interface (see the module doc). Its state dict has timm's keys."""

    def __init__(self, model: nn.Module, in_chans: int) -> None:
        super().__init__()
        self.model = model
        self.zoo_in_chans = in_chans
        self.first_conv_name = _first(model.pretrained_cfg.get("first_conv"))
        self.classifier_name = _first(model.pretrained_cfg.get("classifier"))
        declared = getattr(model, "no_weight_decay", None)
        if callable(declared):  # only names that are parameters here (timm lists dist_token for every ViT)
            params = {name for name, _ in model.named_parameters()}
            model.no_weight_decay = functools.partial(_existing, declared, params)
        self.register_state_dict_post_hook(_timm_keys)
        self.register_load_state_dict_pre_hook(_wrapped_keys)

    @property
    def num_features(self) -> int:
        """The width of the embedding the classifier reads (timm's ``head_hidden_size``: a pre-logits layer's
        width where there is one, else its ``num_features``)."""
        return getattr(self.model, "head_hidden_size", None) or self.model.num_features

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        return [dict(info) for info in self.model.feature_info]

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        return self.model.pretrained_cfg

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.model.forward_features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return self.model.forward_head(x, pre_logits=pre_logits)

    def get_classifier(self) -> nn.Module:
        return self.model.get_classifier()

    def reset_classifier(self, num_classes: int) -> None:
        self.model.reset_classifier(num_classes)

    def stage_groups(self) -> dict[str, int]:
        """Parameter name (in ``self.model``) → timm's layer group (``group_matcher(coarse=False)``, as timm's
        own ``param_groups_layer_decay``; without a matcher, timm's ``auto_group_layers``)."""
        from timm.models._manipulate import group_parameters
        from timm.optim._param_groups import auto_group_layers

        if hasattr(self.model, "group_matcher"):
            return group_parameters(self.model, self.model.group_matcher(coarse=False), reverse=True)
        return auto_group_layers(self.model)

    def stages(self) -> list[tuple[str, list[nn.Module]]]:
        groups, model = self.stage_groups(), self.model
        last = max(groups.values(), default=0)
        classifier = {id(p) for p in model.get_classifier().parameters()}
        head = min((groups[n] for n, p in model.named_parameters() if id(p) in classifier), default=last)
        members: dict[int, list[nn.Module]] = {}
        loose: dict[int, dict[str, nn.Parameter]] = {}

        def place(prefix: str, module: nn.Module) -> None:
            ids = {groups[prefix + n] for n, _ in module.named_parameters() if prefix + n in groups}
            if len(ids) == 1 and module is not model:
                members.setdefault(min(head, ids.pop()), []).append(module)
                return
            for name, param in module._parameters.items():
                if param is not None and prefix + name in groups:
                    loose.setdefault(min(head, groups[prefix + name]), {})[prefix + name] = param
            for child_name, child in module.named_children():
                place(f"{prefix}{child_name}.", child)

        place("", model)
        for group, params in loose.items():
            members.setdefault(group, []).insert(0, _Params(params))
        order = sorted(members)
        named = {group: f"block{i}" for i, group in enumerate(order)}
        named[order[0]], named[head] = "stem", "head"
        return [(named[group], members[group]) for group in order]

    def _input_config(self) -> dict[str, Any]:
        try:
            from timm.models._input import get_model_input_config
        except ImportError:  # an older timm: the source config's
            cfg = self.model.pretrained_cfg
            return {"input_size": cfg.get("input_size"), "fixed_input_size": cfg.get("fixed_input_size", False)}
        return get_model_input_config(self.model)

    @property
    def input_size(self) -> tuple[int, int, int]:
        return (self.zoo_in_chans, *self._input_config()["input_size"][1:])

    @property
    def fixed_input_size(self) -> bool:
        return bool(self._input_config()["fixed_input_size"])

    @property
    def eval_preprocessing(self) -> dict[str, Any]:
        """timm's evaluation transform of this network (``resolve_data_config``) in the task's terms."""
        from timm.data import resolve_data_config

        try:
            return preprocessing(resolve_data_config({}, model=self.model))
        except WeightsError:
            return {}

    def pyramid(self, indices: list[int], mean: list[float], std: list[float]) -> FeatureExtractor:
        """:func:`zoo.backbone`'s extractor of the levels ``indices`` of ``feature_info`` (timm's
        ``FeatureGetterNet``: ``forward_intermediates``, the layers after the last level pruned)."""
        return TimmFeatures(self.model, indices, mean, std)

    def hub_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """zoo's ``config.json`` in timm's layout too: timm's keys (``save_config_for_hf``) and zoo's beside them."""
        from timm.models._hub import save_config_for_hf

        names = config.get("class_names")
        with tempfile.TemporaryDirectory(prefix="zoo-timm-") as tmp:
            path = Path(tmp) / "config.json"
            save_config_for_hf(self.model, str(path), model_config={"label_names": list(names)} if names else None)
            timm_config = json.loads(path.read_text())
        timm_config["pretrained_cfg"].update(mean=config["mean"], std=config["std"])
        return {**timm_config, **config, "architecture": timm_config["architecture"]}


def _existing(declared: Any, params: set[str]) -> set[str]:
    return {name for name in declared() if name in params}


class TimmFeatures(FeatureExtractor):
    """[0, 1] pixels → timm's intermediate maps (NCHW) of the chosen levels, normalisation inside."""

    def __init__(self, model: nn.Module, indices: list[int], mean: list[float], std: list[float]) -> None:
        nn.Module.__init__(self)
        from timm.models._features import FeatureGetterNet

        levels = list(model.feature_info)
        self.feature_info = [dict(levels[i]) for i in indices]
        self.body = FeatureGetterNet(model, out_indices=list(indices), output_fmt="NCHW", prune=True)
        self.normalize = Normalize(mean, std)

    def forward(self, x: Tensor) -> list[Tensor]:
        return list(self.body(self.normalize(x)))


# ---- timm's config.json --------------------------------------------------------------------------
def is_timm_config(config: dict[str, Any]) -> bool:
    """A ``config.json`` in timm's layout (``save_for_hf``, or a zoo folder of a timm network)."""
    return isinstance(config.get("pretrained_cfg"), dict) and isinstance(config.get("architecture"), str)


def preprocessing(cfg: dict[str, Any]) -> dict[str, Any]:
    """timm's evaluation transform (``transforms_imagenet_eval``) in the task's terms: the short side (or, for
    ``squash``, both sides) to ``input_size / crop_pct``, centre crop, timm's interpolation."""
    size = tuple(cfg.get("input_size", (3, 224, 224))[1:])
    crop_pct = cfg.get("crop_pct") or 0.875
    mode = cfg.get("crop_mode") or "center"
    scaled = [math.floor(s / crop_pct) for s in size]
    interpolation = cfg.get("interpolation") or "bilinear"
    if interpolation not in ("nearest", "bilinear", "bicubic"):
        interpolation = "bilinear"
    if mode == "squash":
        return {"resize": scaled, "interpolation": interpolation}
    if mode == "center" and scaled[0] == scaled[1]:
        return {"resize": scaled[0], "interpolation": interpolation}
    raise WeightsError(f"timm's crop_mode {mode!r} at input size {size} has no zoo transforms yet (center, squash)")


def _preprocessing_or_none(cfg: dict[str, Any]) -> dict[str, Any]:
    try:
        return preprocessing(cfg)
    except WeightsError:  # listed anyway; loading them says why their transforms are missing
        return {}


def config_task_args(config: dict[str, Any], where: Path) -> tuple[str, dict[str, Any]]:
    """timm's ``config.json`` → (``timm/<arch>``, task arguments); a zoo folder's own keys come first."""
    arch = PREFIX + config["architecture"]
    get_entry(arch)  # only timm's registered names: nothing named in the file is imported
    cfg, model_args = config["pretrained_cfg"], dict(config.get("model_args") or {})
    try:
        num_classes = int(config.get("num_classes", cfg.get("num_classes")))
        in_chans = int(config.get("in_chans") or model_args.get("in_chans") or cfg["input_size"][0])
    except (KeyError, TypeError, ValueError):
        raise WeightsError(f"{where} needs num_classes and pretrained_cfg.input_size (timm's layout)") from None
    labels = config.get("class_names") or config.get("label_names") or cfg.get("label_names")
    model_kwargs = config.get("model_kwargs")
    if model_kwargs is None:  # timm's reconstruction arguments, less what the task passes itself
        model_kwargs = {k: v for k, v in model_args.items() if k not in ("num_classes", "in_chans")}
    return arch, {
        "num_classes": num_classes,
        "in_chans": in_chans,
        "mean": list(config.get("mean") or cfg.get("mean") or get_entry(arch).mean),
        "std": list(config.get("std") or cfg.get("std") or get_entry(arch).std),
        "class_names": list(labels) if isinstance(labels, list) and len(labels) == num_classes else None,
        "model_kwargs": dict(model_kwargs),
    }


def config_preprocessing(config: dict[str, Any]) -> dict[str, Any]:
    """The evaluation preprocessing a timm-layout ``config.json`` records (zoo's key first)."""
    return dict(config.get("preprocessing") or preprocessing(config["pretrained_cfg"]))


def config_name(config: dict[str, Any]) -> str:
    """``timm/<arch>.<tag>`` of a timm repo (the tag its ``pretrained_cfg`` carries), zoo's ``name`` first."""
    tag = config["pretrained_cfg"].get("tag")
    return config.get("name") or PREFIX + config["architecture"] + (f".{tag}" if tag else "")


register_resolver(PREFIX, resolve_entry)
