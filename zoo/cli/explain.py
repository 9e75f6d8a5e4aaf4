"""``zoo explain``, ``zoo filters``, ``zoo activations``, ``zoo dream``: what a classifier looks at and has learnt."""

from __future__ import annotations

import sys

from zoo.cli.args import ArgumentParser, float_at_least, natural_int, positive_int

SOURCE_HELP = "classifier weights: arch.tag, a weight folder or file, hf-hub:org/name"


def _images(model, paths: list[str]):
    import torch

    from zoo.data.images import find_images, read_all
    from zoo.errors import ZooError

    files = find_images(paths)
    if not files:
        raise ZooError(f"no image files under {', '.join(map(str, paths))}; give image files or folders of them")
    return torch.stack(read_all(files, model.transforms()))


def _class_index(model, name: str) -> int:
    from zoo.errors import InvalidValueError

    names = [n.lower() for n in model.class_names]
    if name.lower() in names:
        return names.index(name.lower())
    if name.isdigit() and int(name) < len(names):
        return int(name)
    raise InvalidValueError(
        f"unknown class {name!r}; {model.weights_name} knows {', '.join(model.class_names)} (or an index 0-{len(names) - 1})"
    )


def cmd_explain(argv: list[str]) -> None:
    from zoo.explainers import METHODS

    parser = ArgumentParser(
        prog="zoo explain",
        description="Draw where the evidence for each image's predicted class lies (Captum attributions), as a PNG.",
    )
    parser.add_argument("source", help=SOURCE_HELP)
    parser.add_argument("paths", nargs="+", help="image files or folders")
    parser.add_argument("-o", "--output", default="explain.png", help="PNG to write (default explain.png)")
    parser.add_argument("--method", default="gradcam", choices=METHODS, help="attribution method (default gradcam)")
    parser.add_argument("--target", help="explain this class (name or index) instead of each image's prediction")
    parser.add_argument(
        "--layer", help="Grad-CAM's layer (default: the last stage the family declares whose map is at least 4×4)"
    )
    args = parser.parse_args(argv)
    from zoo.plots import save
    from zoo.visualise import _load, explain_figure

    model = _load(args.source).eval()
    images = _images(model, args.paths)
    target = None if args.target is None else _class_index(model, args.target)
    options = {"layer": args.layer} if args.layer else {}
    print(save(explain_figure(model, images, args.method, target, **options), args.output))


def cmd_filters(argv: list[str]) -> None:
    parser = ArgumentParser(prog="zoo filters", description="Draw the first convolution's filters as a grid (PNG).")
    parser.add_argument("source", help=SOURCE_HELP)
    parser.add_argument("-o", "--output", default="filters.png", help="PNG to write (default filters.png)")
    args = parser.parse_args(argv)
    from zoo.plots import save
    from zoo.visualise import _load, filters_figure

    print(save(filters_figure(_load(args.source)), args.output))


def cmd_activations(argv: list[str]) -> None:
    parser = ArgumentParser(
        prog="zoo activations", description="Draw the feature maps of one layer for one image (PNG)."
    )
    parser.add_argument("source", help=SOURCE_HELP)
    parser.add_argument("image", help="one image file")
    parser.add_argument("--layer", help="module name (default: the first stage the family declares; see zoo info)")
    parser.add_argument("--limit", type=positive_int, default=32, help="most active channels shown (default 32)")
    parser.add_argument("-o", "--output", default="activations.png", help="PNG to write (default activations.png)")
    args = parser.parse_args(argv)
    from zoo.plots import save
    from zoo.visualise import _load, activations_figure

    model = _load(args.source).eval()
    image = _images(model, [args.image])[0]
    print(save(activations_figure(model, image, args.layer, limit=args.limit), args.output))


def cmd_dream(argv: list[str]) -> None:
    parser = ArgumentParser(
        prog="zoo dream",
        description="Activation maximisation: the input that a class (or a channel of a layer) responds to most, "
        "found by gradient ascent with jitter, blur and total variation, pixels kept in [0, 1] (PNG).",
    )
    parser.add_argument("source", help=SOURCE_HELP)
    parser.add_argument("--class", dest="classes", nargs="*", help="class names or indices (default: every class)")
    parser.add_argument("--layer", help="maximise channels of this module instead of a class")
    parser.add_argument("--channel", type=natural_int, nargs="*", help="with --layer: the channels (default 0-9)")
    parser.add_argument("--steps", type=positive_int, default=256, help="gradient-ascent steps (default 256)")
    parser.add_argument("--tv", type=float_at_least(0.0), default=0.5, help="total-variation weight (default 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the starting noise (default 0)")
    parser.add_argument("-o", "--output", default="dream.png", help="PNG to write (default dream.png)")
    args = parser.parse_args(argv)
    from zoo.plots import save
    from zoo.visualise import _load, dream, dream_figure

    model = _load(args.source).eval()
    if args.layer:
        channels = args.channel or list(range(10))
        images, _ = dream(
            model, layer=args.layer, channels=channels, steps=args.steps, tv_weight=args.tv, seed=args.seed
        )
        titles, what = [f"channel {c}" for c in channels], f"channels of {args.layer}"
    else:
        classes = [_class_index(model, c) for c in args.classes] if args.classes else None
        images, _ = dream(model, classes, steps=args.steps, tv_weight=args.tv, seed=args.seed)
        chosen = classes if classes is not None else range(len(images))
        with __import__("torch").no_grad():
            probs = model(images).softmax(dim=1)
        titles = [f"{model.class_names[c]} ({100 * float(probs[i, c]):.0f}%)" for i, c in enumerate(chosen)]
        what = "the input each class likes best"
    path = save(dream_figure(model, images, titles, f"{model.weights_name}: {what}"), args.output)
    print(path)
    print(f"{args.steps} steps of gradient ascent, jitter 2 px, blur every 4 steps, TV {args.tv}", file=sys.stderr)
