"""The docs' pictures for issue 44 (GoogLeNet, multi-label, angles), drawn from the registry and shipped weights.

python docs/figures_outputs.py googlenet   # docs/img/googlenet_parts.png: parameters vs multiply-adds by part
python docs/figures_outputs.py tags        # docs/img/scene_tags.png: test scenes, true and predicted garments
python docs/figures_outputs.py rotation    # docs/img/rotation.png: turned garments, true and read-back angles
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

OUT = Path(__file__).parent / "img"


def googlenet() -> Path:
    import zoo.models  # noqa: F401
    from zoo import plots
    from zoo.layer_table import stage_table
    from zoo.registry import build_net

    rows = stage_table(build_net("googlenet"), (3, 224, 224))
    names = ["stem\n(conv1-3)", "inception\n3a-3b", "inception\n4a-4e", "inception\n5a-5b", "fc"]
    params = [r.params / 1e6 for r in rows]
    macs = [r.flops / 2e9 for r in rows]
    fig, (left, right) = plots.new_figure(9, 3.4, ncols=2)
    for axis, values, label, unit in ((left, params, "parameters", "M"), (right, macs, "multiply-adds", "G")):
        bars = axis.bar(names, values, color=["#999", "#4c72b0", "#4c72b0", "#4c72b0", "#c44e52"])
        for bar, value in zip(bars, values):
            axis.annotate(f"{value:.2f}{unit}", (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom")
        axis.set_title(f"{label}: {sum(values):.2f}{unit} in all")
        axis.tick_params(axis="x", labelsize=8)
    fig.suptitle("googlenet (torchvision's layout) at 224×224: where the parameters and the arithmetic sit")
    return plots.save(fig, OUT / "googlenet_parts.png")


def tags() -> Path:
    import zoo
    from zoo import plots
    from zoo.data.multilabel import FashionMNISTSceneTags

    model = zoo.load("resnet20.fmnist_scene_tags")
    images, targets = FashionMNISTSceneTags().scenes("test")
    small = FashionMNISTSceneTags(input_size=(1, 28, 28))
    small.setup("test")
    predicted = model.predict_labels(small.datasets["test"].images[:8].float() / 255)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 6.4), layout="constrained")
    axes = fig.subplots(2, 4).flatten()
    short = {"T-shirt/top": "T-shirt", "Ankle boot": "boot"}
    for k, axis in enumerate(axes):
        axis.imshow(images[k, 0], cmap="gray")
        axis.axis("off")
        truth = [short.get(n, n) for n, t in zip(model.class_names, targets[k]) if t]
        found = [short.get(n, n) for n, _ in predicted[k]]
        right = set(found) == set(truth)
        axis.set_title(
            "true: " + ", ".join(truth) + "\nfound: " + (", ".join(found) or "none"),
            fontsize=8,
            color="black" if right else "#c44e52",
        )
    fig.suptitle(
        "resnet20.fmnist_scene_tags on the first 8 test scenes (64 px shown, 28 px seen)\n"
        "red: the garments found are not exactly the true set"
    )
    return plots.save(fig, OUT / "scene_tags.png")


def rotation() -> Path:
    import zoo
    from zoo import plots
    from zoo.data.fashion_mnist import CLASS_NAMES
    from zoo.data.rotations import FashionMNISTRotations

    model = zoo.load("resnet20.fmnist_rotation")
    data = FashionMNISTRotations(test_images=10)
    data.setup("test")
    images, angles, classes = data.datasets["test"].tensors
    predicted = model.predict_angle(images.float() / 255)
    fig, axes = plots.new_figure(12, 2.4, ncols=10)
    for k, axis in enumerate(axes):
        axis.imshow(images[k, 0], cmap="gray")
        axis.axis("off")
        error = abs((float(predicted[k]) - float(angles[k]) + 180) % 360 - 180)
        axis.set_title(
            f"{CLASS_NAMES[int(classes[k])]}\n{float(angles[k]):.0f}° → {float(predicted[k]):.0f}°",
            fontsize=7,
            color="black" if error < 20 else "#c44e52",
        )
    fig.suptitle("resnet20.fmnist_rotation: true angle → atan2(sin, cos) of the outputs (red: 20° or more off)")
    return plots.save(fig, OUT / "rotation.png")


if __name__ == "__main__":
    torch.set_num_threads(1)
    for name in sys.argv[1:] or ["googlenet"]:
        print({"googlenet": googlenet, "tags": tags, "rotation": rotation}[name]())
