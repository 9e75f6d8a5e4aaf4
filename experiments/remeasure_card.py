"""Re-measure a shipped weight folder in float32 and write the numbers into its card.

A card's test and validation numbers are what users get from ``zoo evaluate`` (float32). Cards of runs that
trained in bf16 were once measured in bf16 by the run itself; this re-measures their own weights with the
zoo's evaluate path (:func:`zoo.evaluate.measure_for_card`: ``Trainer.test`` and ``validate`` in float32 on
the recipe's data, the 10,000 test images and the seeded 5,000 validation images) and rewrites
``metrics.json`` and ``README.md`` with :func:`zoo.cards.rewrite_measurement` (the numbers replaced are kept
under ``earlier_measurement``, the card says both). The losses are the run's (its label smoothing), so
that the two measurements differ by the precision alone. The weight file is not touched.

    OMP_NUM_THREADS=1 python experiments/remeasure_card.py vgg_lite.fmnist swin_lite_conv.fmnist
"""

from __future__ import annotations

import argparse
import json
import time

import zoo
from zoo.cards import card_score, format_score, rewrite_measurement
from zoo.evaluate import measure_for_card
from zoo.files import bundled_cards_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help="shipped weights (arch.tag) to re-measure")
    parser.add_argument("--data-root", default=None, help="folder with the Fashion-MNIST IDX files")
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args(argv)
    for name in args.names:
        model = zoo.load(name)
        training = json.loads((bundled_cards_dir() / name / "metrics.json").read_text()).get("training") or {}
        if "label_smoothing" in training and "label_smoothing" in model.hparams:  # the loss as the run defined it
            model.hparams.label_smoothing = training["label_smoothing"]
        start = time.perf_counter()
        datamodule = model.description.default_datamodule(model, args.data_root, batch_size=args.batch_size)
        measured = measure_for_card(model, datamodule)
        metrics = rewrite_measurement(bundled_cards_dir() / name, measured)
        earlier = metrics.get("earlier_measurement") or {}
        was = card_score({**metrics, **earlier}) if earlier else None
        print(
            f"{name}: {format_score(card_score(metrics))} in float32 on {metrics['test_samples']:,} test images"
            + (f" (was {format_score(was)} in {earlier['precision']})" if was else " (unchanged)")
            + f", {time.perf_counter() - start:.0f} s"
        )


if __name__ == "__main__":
    main()
