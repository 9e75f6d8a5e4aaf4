"""``zoo segment WEIGHTS images/ -o masks.png``: per-pixel classes of image files, drawn or written.

Each file is prepared by the weights' ``transforms()`` (channels, size), segmented, and its label map
scaled back to the file's own size (``model.predict(images, sizes=)``). ``-o`` draws the masks over the
images (one colour per class, the background left clear) with a legend of the classes found;
``--out-dir`` writes one index PNG per file, of the file's size, its pixel values the classes (0:
background; a palette PNG, so it also shows in colour, and :class:`~zoo.data.mask_folders.MaskFolderDataModule`
reads it back). Without either, each file's line says the share of its pixels per class.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.cli.args import ArgumentParser
from zoo.destinations import check_output_file, check_output_folder
from zoo.errors import ZooError

if TYPE_CHECKING:  # torch loads when the command runs, so `import zoo.cli` (and `zoo list`) stays light
    import torch

# ten colours told apart easily (Tableau 10, its grey made yellow: the images are grey), then evenly spread hues
DISTINCT = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (255, 221, 0),
    (188, 189, 34),
    (23, 190, 207),
]


def palette(count: int) -> list[tuple[int, int, int]]:
    """``count`` distinct colours, black first (the background)."""
    import colorsys

    colours = [(0, 0, 0), *DISTINCT[: max(0, count - 1)]]
    for i in range(len(colours), count):
        r, g, b = colorsys.hsv_to_rgb(((i - 1) * 0.618034) % 1.0, 0.85, 1.0)
        colours.append((round(255 * r), round(255 * g), round(255 * b)))
    return colours


def segment_files(
    source: Any, paths: list[str | Path]
) -> tuple[Any, list[tuple[str, torch.Tensor, torch.Tensor]], list[str]]:
    """(the model, per readable file ``(path, image at the model's size, label map at the file's size)``,
    the unreadable files)."""
    import torch

    from zoo.detect import model_and_files

    model, good, bad = model_and_files(source, paths, "segment")
    images = torch.stack([image for _, _, image in good])
    maps = model.predict(images, sizes=[size for _, size, _ in good])
    return model, [(str(p), image, m.cpu()) for (p, _, image), m in zip(good, maps)], bad


def draw(images: torch.Tensor, maps: list[torch.Tensor], names: list[str], out: str | Path, scale: int = 4) -> Path:
    """The images ``(N, C, H, W)`` in [0, 1], ``scale``× larger, their label maps over them (background clear),
    in a grid with a legend of the classes found, as one PNG."""
    import torch
    import torch.nn.functional as F
    from PIL import Image, ImageDraw
    from torchvision.utils import draw_segmentation_masks, make_grid

    colours = palette(len(names))
    drawn, found = [], set()
    for image, labels in zip(images, maps):
        big = F.interpolate(image[None], scale_factor=scale, mode="nearest")[0]
        pixels = (big.expand(3, -1, -1) * 255).round().to(torch.uint8)
        labels = F.interpolate(labels[None, None].float(), size=big.shape[-2:], mode="nearest")[0, 0].long()
        present = [int(v) for v in labels.unique() if int(v) > 0]
        found.update(present)
        if present:
            masks = torch.stack([labels == v for v in present])
            pixels = draw_segmentation_masks(pixels, masks, alpha=0.55, colors=[colours[v] for v in present])
        drawn.append(pixels)
    grid = make_grid(torch.stack(drawn), nrow=min(4, len(drawn)), padding=4, pad_value=80)
    picture = Image.fromarray(grid.permute(1, 2, 0).numpy())
    shown = sorted(found)
    rows = max(1, (len(shown) + 3) // 4)
    canvas = Image.new("RGB", (picture.width, picture.height + 18 * rows + 8), (255, 255, 255))
    canvas.paste(picture, (0, 0))
    pen = ImageDraw.Draw(canvas)
    column = max(1, picture.width // 4)
    for i, value in enumerate(shown):  # the legend: a swatch and a name per class found
        x, y = 6 + (i % 4) * column, picture.height + 6 + 18 * (i // 4)
        pen.rectangle([x, y, x + 12, y + 12], fill=colours[value], outline=(0, 0, 0))
        pen.text((x + 17, y), names[value], fill=(0, 0, 0))
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def write_index_png(labels: torch.Tensor, path: Path, colours: list[tuple[int, int, int]]) -> None:
    """A label map as a palette PNG: pixel values are the classes, the palette colours them."""
    import torch
    from PIL import Image

    image = Image.fromarray(labels.to(torch.uint8).numpy(), mode="P")
    image.putpalette([c for colour in colours for c in colour] + [0, 0, 0] * (256 - len(colours)))
    image.save(path)


def cmd_segment(argv: list[str]) -> None:
    import torch

    parser = ArgumentParser(
        prog="zoo segment",
        description="Segment image files: each pixel's class (0: background), in each file's own pixels.",
    )
    parser.add_argument("source", help="segmentation weights: arch.tag, a weight folder, hf-hub:org/name")
    parser.add_argument("paths", nargs="+", help="image files or folders")
    parser.add_argument("-o", "--output", help="draw the masks over the images, with a legend, into this PNG")
    parser.add_argument("--out-dir", help="write one index PNG per file here (values: classes; 0 background)")
    args = parser.parse_args(argv)
    if args.output and Path(args.output).suffix.lower() != ".png":
        raise ZooError(f"-o {args.output}: the drawing is a PNG; name it something.png")
    if args.output:
        check_output_file(args.output, suffixes=(".png",))  # not a folder, not under a file
    if args.out_dir and Path(args.out_dir).exists() and not Path(args.out_dir).is_dir():
        raise ZooError(f"--out-dir {args.out_dir} is a file; give a folder")
    if args.out_dir:
        check_output_folder(args.out_dir, option="--out-dir")
    model, results, bad = segment_files(args.source, args.paths)
    names = model.label_names
    for path, _, labels in results:
        counts = torch.bincount(labels.flatten(), minlength=len(names)).tolist()
        shares = [(names[v], n / labels.numel()) for v, n in enumerate(counts) if n and v > 0]
        shown = ", ".join(f"{name} {100 * share:.1f}%" for name, share in sorted(shares, key=lambda s: -s[1]))
        print(f"{path}: {shown or 'background only'}")
    if args.out_dir:
        folder = Path(args.out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        colours = palette(len(names))
        for path, _, labels in results:
            write_index_png(labels, folder / (Path(path).stem + ".png"), colours)
        print(f"wrote {len(results)} index PNG(s) to {folder}", file=sys.stderr)
    if args.output:
        draw(torch.stack([image for _, image, _ in results]), [r[2] for r in results], names, args.output)
        print(f"wrote {args.output}", file=sys.stderr)
    if bad:
        print(f"zoo: {len(bad)} unreadable file(s): {', '.join(bad[:5])}", file=sys.stderr)
        raise SystemExit(1)
