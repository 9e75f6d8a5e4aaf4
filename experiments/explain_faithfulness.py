"""Are the attribution maps faithful? The deletion test of the README's "What does it look at?" table.

For every shipped classifier (``model_cards/*`` whose task is image classification), on real Fashion-MNIST
test images of its classes (a fixed random draw), each method of :func:`zoo.explain` ranks the pixels; the
top 10% of the image's pixels, taken among those not already black, are set to the background (0, black),
and the predicted class's probability is measured again. A faithful map lowers it more than deleting as
many random pixels (the mean of 10 random rankings). The pixel intensity (the brightest pixels first) is the
simple baseline a map should beat to be worth its computation. ``any_pixel`` records the same maps ranked
over every pixel, black ones included (a black pixel picked is not changed), for comparison.

    python experiments/explain_faithfulness.py                 # docs/explain_faithfulness.json (200 images)
    python experiments/explain_faithfulness.py --images 50 --weights lenet5.fmnist
    python experiments/explain_faithfulness.py --layers     # docs/explain_gradcam_layers.json (every stage)

It writes ``docs/explain_faithfulness.json`` and prints the README's table (``--markdown`` of the record).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import zoo
from zoo.data.fashion_mnist import CLASS_NAMES, load_split
from zoo.explainers import (
    cam_layer,
    chance_drop,
    deletion_drop,
    explain,
    faithfulness,
    forward_function,
    level_maps,
    rankings,
)

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("gradcam", "integrated_gradients", "saliency", "occlusion")
COLUMNS = (*METHODS, "intensity", "random")
DRAWS = 10  # random rankings averaged for the chance level


def shipped() -> list[str]:
    """The shipped classifiers: every model card whose task is image classification."""
    cards = sorted((ROOT / "model_cards").glob("*/config.json"))
    return [path.parent.name for path in cards if json.loads(path.read_text())["task"] == "image-classification"]


def test_images(count: int, seed: int = 0, classes: list[str] | None = None) -> torch.Tensor:
    """``count`` test images (a fixed random draw) of ``classes`` (default all ten), float (N, 1, 28, 28)."""
    images, labels = load_split("test")
    wanted = torch.tensor([CLASS_NAMES.index(name) for name in classes or CLASS_NAMES])
    images = images[torch.isin(labels, wanted)]
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:count]
    return images[pick].unsqueeze(1).float() / 255


def markdown(results: dict[str, dict[str, float]]) -> str:
    head = "| weights | Grad-CAM | integrated gradients | saliency | occlusion | pixel intensity | random pixels |"
    rows = [head, "|---|" + "---:|" * len(COLUMNS)]
    for name, row in results.items():
        cells = [
            f"**{100 * row[c]:.1f}**" if c in METHODS and row[c] <= row["random"] else f"{100 * row[c]:.1f}"
            for c in COLUMNS
        ]
        rows.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def diagnostics(model, images: torch.Tensor, fraction: float) -> dict[str, float]:
    """Two other choices, measured like the table (pixels not already black): Grad-CAM at the family's last
    declared stage (the default before the 4×4 rule), and Simonyan et al.'s saliency, the gradient's absolute
    value (largest over channels), which ranks the pixels whose darkening would raise the class as high as
    those whose darkening lowers it."""
    from captum.attr import Saliency

    forward = forward_function(model)
    with torch.no_grad():
        target = forward(images).argmax(dim=1)
    maps = dict(
        gradcam_last_stage=explain(model, images, "gradcam", layer=model.net.feature_info[-1]["module"]),
        saliency_abs=Saliency(forward).attribute(images.clone().requires_grad_(True), target, abs=True).amax(1),
    )
    return {name: float(deletion_drop(model, images, found, fraction).mean()) for name, found in maps.items()}


def gradcam_layers(name: str, count: int, seed: int = 1) -> dict:
    """Grad-CAM at every stage the family declares (reached by the target's gradient), measured like the table
    on ``count`` other test images (``seed``), beside random pixels and random maps as coarse as the default
    layer's grid (uniform noise on that grid, upsampled the same way): is any layer faithful where the default
    is not, and is the default better than chance at its own resolution?"""
    from captum.attr import LayerAttribution

    model = zoo.load(str(ROOT / "model_cards" / name)).eval()
    images = test_images(count, seed, model.hparams.get("class_names"))
    found = level_maps(model, images)
    default = cam_layer(model, images)
    drops = {
        info["module"]: float(
            deletion_drop(model, images, explain(model, images, "gradcam", layer=info["module"])).mean()
        )
        for info, _, reached in found
        if reached
    }
    grid = next(size for info, size, _ in found if info["module"] == default)
    generator = torch.Generator().manual_seed(0)
    coarse = [
        LayerAttribution.interpolate(torch.rand(count, 1, *grid, generator=generator), images.shape[-2:], "bilinear")
        for _ in range(DRAWS)
    ]
    return dict(
        images=count,
        seed=seed,
        default=default,
        default_grid=list(grid),
        gradcam=drops,
        random=float(chance_drop(model, images, draws=DRAWS).mean()),
        random_coarse=float(torch.stack([deletion_drop(model, images, m[:, 0]).mean() for m in coarse]).mean()),
    )


def measure(name: str, count: int, fraction: float, steps: int, methods=METHODS, seed: int = 0) -> dict:
    """One weights' drops (both rankings), diagnostics and Grad-CAM's layer, on ``count`` test images."""
    model = zoo.load(str(ROOT / "model_cards" / name)).eval()
    images = test_images(count, seed, model.hparams.get("class_names"))
    maps = rankings(model, images, methods, steps=steps)
    options = dict(fraction=fraction, draws=DRAWS, maps=maps)
    return dict(
        deletable=faithfulness(model, images, **options),
        any_pixel=faithfulness(model, images, any_pixel=True, **options),
        diagnostics=diagnostics(model, images, fraction),
        gradcam_layer=cam_layer(model, images),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--weights", nargs="*", default=None, help="default: every shipped classifier")
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=32, help="integrated gradients' path steps")
    parser.add_argument("-o", "--output", default=str(ROOT / "docs" / "explain_faithfulness.json"))
    parser.add_argument(
        "--layers",
        action="store_true",
        help="Grad-CAM at every declared stage instead, on 100 other images: docs/explain_gradcam_layers.json",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)  # the machine is shared: one thread, and the times printed are comparable
    if args.layers:
        layers_path = ROOT / "docs" / "explain_gradcam_layers.json"
        found = {}
        for name in args.weights or shipped():
            found[name] = gradcam_layers(name, 100)
            print(name, json.dumps(found[name]), flush=True)
            layers_path.write_text(json.dumps(found, indent=1) + "\n")
        return
    output = Path(args.output)
    old = json.loads(output.read_text()) if args.weights and output.exists() else {}
    results, any_pixel, layers = old.get("results", {}), old.get("any_pixel", {}), old.get("gradcam_layer", {})
    diagnosed = old.get("diagnostics", {})
    for name in args.weights or shipped():
        started = time.perf_counter()
        found = measure(name, args.images, args.fraction, args.steps)
        results[name], any_pixel[name], layers[name] = found["deletable"], found["any_pixel"], found["gradcam_layer"]
        diagnosed[name] = found["diagnostics"]
        print(
            name,
            layers[name],
            {k: round(100 * v, 1) for k, v in {**results[name], **diagnosed[name]}.items()},
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
        record = dict(
            images=args.images,
            fraction=args.fraction,
            background=0.0,
            steps=args.steps,
            seed=0,
            random_draws=DRAWS,
            measure=(
                "mean drop of the predicted class's probability (0-1) after deleting the top 10% of the image's "
                "pixels, taken among the pixels not already at the background value (every ranking changes as many)"
            ),
            results=dict(sorted(results.items())),
            any_pixel=dict(sorted(any_pixel.items())),
            gradcam_layer=dict(sorted(layers.items())),
            diagnostics=dict(sorted(diagnosed.items())),
        )
        output.write_text(json.dumps(record, indent=1) + "\n")  # after each weights: a stopped run keeps its rows
    print(markdown(record["results"]))


if __name__ == "__main__":
    main()
