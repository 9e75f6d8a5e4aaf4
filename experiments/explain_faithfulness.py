"""Are the attribution maps faithful? The deletion test of the README's "What does it look at?" table.

For every shipped Fashion-MNIST classifier (``model_cards/*.fmnist``), on real test images (a fixed random
draw of the 10,000), each method of :func:`zoo.explain` ranks the pixels; the 10% it ranks highest are set
to the background (0, black), and the predicted class's probability is measured again. A faithful map
lowers it more than deleting 10% random pixels. The pixel intensity (the brightest pixels first) is the
simple baseline a map should beat to be worth its computation.

    python experiments/explain_faithfulness.py                 # docs/explain_faithfulness.json (200 images)
    python experiments/explain_faithfulness.py --images 50 --weights lenet5.fmnist

It writes ``docs/explain_faithfulness.json`` and prints the README's table (``--markdown``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import zoo
from zoo.data.fashion_mnist import load_split
from zoo.explainers import faithfulness

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("gradcam", "integrated_gradients", "saliency", "occlusion")
COLUMNS = (*METHODS, "intensity", "random")


def shipped() -> list[str]:
    return sorted(path.name for path in (ROOT / "model_cards").glob("*.fmnist"))


def test_images(count: int, seed: int = 0) -> torch.Tensor:
    """``count`` test images (a fixed random draw), float (N, 1, 28, 28) in [0, 1]."""
    images, _ = load_split("test")
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:count]
    return images[pick].unsqueeze(1).float() / 255


def markdown(results: dict[str, dict[str, float]]) -> str:
    head = "| weights | Grad-CAM | integrated gradients | saliency | occlusion | pixel intensity | random pixels |"
    rows = [head, "|---|" + "---:|" * len(COLUMNS)]
    for name, row in results.items():
        rows.append(f"| `{name}` | " + " | ".join(f"{100 * row[c]:.1f}" for c in COLUMNS) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--weights", nargs="*", default=None, help="default: every model_cards/*.fmnist")
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=32, help="integrated gradients' path steps")
    parser.add_argument("-o", "--output", default=str(ROOT / "docs" / "explain_faithfulness.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # the machine is shared: one thread, and the times printed are comparable
    images = test_images(args.images)
    results = {}
    for name in args.weights or shipped():
        started = time.perf_counter()
        model = zoo.load(str(ROOT / "model_cards" / name)).eval()
        results[name] = faithfulness(model, images, METHODS, fraction=args.fraction, steps=args.steps)
        print(name, {k: round(100 * v, 1) for k, v in results[name].items()}, f"{time.perf_counter() - started:.0f} s")
    output = Path(args.output)
    if args.weights and output.exists():  # some weights re-measured: the other rows stay
        results = {**json.loads(output.read_text())["results"], **results}
    results = dict(sorted(results.items()))
    record = dict(
        images=args.images,
        fraction=args.fraction,
        background=0.0,
        steps=args.steps,
        seed=0,
        measure="mean drop of the predicted class's probability (0-1) after deleting the top pixels",
        results=results,
    )
    output.write_text(json.dumps(record, indent=1) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
