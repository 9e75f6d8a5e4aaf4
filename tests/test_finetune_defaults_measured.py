"""The measurement behind the fine-tuning defaults (``experiments/finetune_defaults.py`` →
``docs/finetune_defaults.json``), recomputed from the raw runs: what ``docs/finetuning.md`` says of them, and
the datasets they ran on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import zoo
from zoo import finetune_defaults as defaults

REPO = Path(__file__).resolve().parents[1]


def _measured() -> list[dict]:
    return json.loads((REPO / "docs" / "finetune_defaults.json").read_text())


def _measured_accuracy_rule() -> list[dict]:
    """The runs from the weights with ``lr="auto"`` under the previous rule, every run keeping its best validation
    accuracy (an imprinted head's ties to the earlier epoch): the defaults and the always-drawn / always-imprinted
    variants, which the head's rule and the probes of it were judged on (docs/finetuning.md)."""
    return json.loads((REPO / "docs" / "finetune_defaults_accuracy_rule.json").read_text())


def _measured_unaveraged() -> list[dict]:
    """The defaults runs before a classifier's budgeted run averaged its weights (the imprinted head's loss rule
    already in place), which the weight average was judged against (docs/finetuning.md)."""
    return json.loads((REPO / "docs" / "finetune_defaults_unaveraged.json").read_text())


def _experiment():
    import sys

    sys.path.insert(0, str(REPO / "experiments"))
    import finetune_defaults as experiment

    return experiment


def _datasets():
    _experiment()  # puts experiments/ on the path
    import finetune_datasets

    return finetune_datasets


def test_recorded_defaults_are_what_the_code_chooses_now() -> None:
    """Every defaults run in the JSON chose what the current constants choose: change the step budget or the
    divisor and this fails until the runs are measured again."""
    import re

    experiment = _experiment()
    runs = [r for r in _measured() if r["lr"] == "auto" and r.get("init", "pretrained") == "pretrained"]
    assert len(runs) >= 10
    for r in runs:
        images = int(re.search(r"max_epochs \d+ \((\d+) training images, batch 32", r["printed"]).group(1))
        if r.get("val_images") is not None:
            assert images == r["train_images"] - r["val_images"], r
        per_epoch = -(-images // 32)
        epochs = min(defaults.MAX_EPOCHS, max(defaults.MIN_EPOCHS, -(-defaults.STEP_BUDGET // per_epoch)))
        assert r["chosen_epochs"] == epochs and 1 <= r["best_epoch"] <= r["epochs_run"] <= epochs, r
        divisor = defaults.IMPRINTED_DIVISOR if r["head_init"] == "imprint" else defaults.LR_DIVISOR
        expected = min(defaults.LR_CEIL, max(defaults.LR_FLOOR, r["lowest_loss_lr"] / divisor))
        assert r["chosen_lr"] == pytest.approx(expected, rel=0.01), r
        assert re.search(r"/ (30|100) within", r["printed"]), r  # a run at the floor chose the same rate before
        # the head: "auto" (the defaults) keeps the imprinted start exactly when its curve's lowest is low enough
        if not r.get("variant"):
            lowest = experiment.head_lowest(r)
            assert lowest is not None and (r["head_init"] == "imprint") == (lowest <= defaults.HEAD_KEEP_LR), r
        else:
            assert r["head_init"] == r["variant"], r
        # a kept imprinted head's run keeps the epoch of its lowest validation loss, a drawn head's its best accuracy
        by_loss = "the lowest validation loss (an imprinted head)"
        assert r.get("best_epoch_by") == (by_loss if r["head_init"] == "imprint" else None), r
        # a classifier's budgeted run validates, keeps and tests an average of its weights, at the current decay
        decay = defaults.AVERAGE_DECAY
        assert r.get("weights_averaged") == (
            f"weights averaged: EMA (decay {decay:g}: about the last {round(1 / (1 - decay))} steps), validated, "
            "kept and tested"
        ), r


def _margins_by_hand() -> dict[tuple[str, int], float]:
    """The transfer table's last column from docs/transfer.json: per (arch, images per class), the best
    non-scratch method's mean over seeds minus scratch's mean."""
    sums: dict[tuple, list[float]] = {}
    for r in json.loads((REPO / "docs" / "transfer.json").read_text()):
        sums.setdefault((r["arch"], r["per_class"], r["method"]), []).append(r["test_acc"])
    means = {k: sum(v) / len(v) for k, v in sums.items()}
    cells = {(a, n) for a, n, _ in means}
    return {
        (a, n): max(v for (a2, n2, m), v in means.items() if (a2, n2) == (a, n) and m != "scratch")
        - means[(a, n, "scratch")]
        for a, n in cells
    }


def test_the_table_is_recomputed_from_the_runs() -> None:
    """Each row of the table: the defaults' score, the best grid and scratch runs, the transfer margin and
    whether it is met, recomputed here from the raw runs (a pair without scratch runs shows dashes)."""
    experiment = _experiment()
    runs, margins = _measured(), _margins_by_hand()
    assert margins[("lenet5_relu", 10)] == pytest.approx(0.063, abs=0.0006)  # docs/transfer.md: +6.3
    assert margins[("resnet20", 100)] == pytest.approx(0.011, abs=0.0006)  # +1.1
    first = experiment.table(runs).split("The same pairs at three seeds")[0]
    rows = [line for line in first.splitlines() if line.startswith("| ") and "---" not in line]
    rows = [row.strip("| ").split(" | ") for row in rows if not row.startswith("| model |")]
    pairs = {(r["model"], r["dataset"]) for r in runs if r["lr"] == "auto"}
    assert {(row[0], row[1]) for row in rows} == pairs and len(rows) == len(pairs)
    with_scratch = 0
    for model, data, *cells in rows:
        mine = [r for r in runs if (r["model"], r["dataset"]) == (model, data) and not r.get("variant")]
        mine = [r for r in mine if r.get("init") == "scratch" or r["seed"] == experiment.SEED]  # not the repeats
        default = [r for r in mine if r["lr"] == "auto" and r.get("init", "pretrained") == "pretrained"]
        grid = [r["test_acc"] for r in mine if r["lr"] != "auto" and r.get("init", "pretrained") == "pretrained"]
        scratch = [r["test_acc"] for r in mine if r.get("init") == "scratch"]
        assert len(default) == 1 and len(grid) >= 3, (model, data)
        acc = default[0]["test_acc"]
        assert float(cells[2]) == pytest.approx(100 * acc, abs=0.051)
        assert float(cells[3].split()[0]) == pytest.approx(100 * max(grid), abs=0.051)
        assert float(cells[4]) == pytest.approx(100 * (acc - max(grid)), abs=0.051)
        arch = {"lenet5": "lenet5_relu"}.get(model.split(".")[0], model.split(".")[0])
        per_class = default[0]["train_images"] // (5 if data in ("fmnist5to9", "fmnist0to4own10") else 10)
        margin = margins.get((arch, per_class))  # the transfer table has 10, 25 and 100 per class
        if margin is None:
            assert cells[7] == "–" and per_class not in (10, 25, 100), (model, data)
        else:
            assert float(cells[7]) == pytest.approx(100 * margin, abs=0.051)
        if not scratch:
            assert cells[5] == cells[6] == cells[8] == "–", (model, data)
            continue
        assert margin is not None, (model, data)
        with_scratch += 1
        assert float(cells[5].split()[0]) == pytest.approx(100 * max(scratch), abs=0.051)
        assert float(cells[6]) == pytest.approx(100 * (acc - max(scratch)), abs=0.051)
        assert cells[8] == ("yes" if acc - max(scratch) >= margin else "**no**"), (model, data)
    assert with_scratch >= 8


def test_what_the_fine_tuning_page_says_of_the_runs() -> None:
    """docs/finetuning.md, recomputed from the raw runs: at seed 1 the defaults are within a point of the grid's
    best (or ahead) on every pair but six, and ahead of the best scratch run on every pair that has one."""
    experiment = _experiment()
    runs = [r for r in _measured() if not r.get("variant")]
    misses, behind_scratch = set(), set()
    for model, data in {(r["model"], r["dataset"]) for r in runs if r["lr"] == "auto"}:
        mine = [r for r in runs if (r["model"], r["dataset"]) == (model, data)]
        pretrained = [r for r in mine if r.get("init", "pretrained") == "pretrained" and r["seed"] == experiment.SEED]
        acc = next(r["test_acc"] for r in pretrained if r["lr"] == "auto")
        grid = max(r["test_acc"] for r in pretrained if r["lr"] != "auto")
        if acc < grid - 0.01:
            misses.add((model, data))
        scratch = [r["test_acc"] for r in mine if r.get("init") == "scratch"]
        if scratch and acc <= max(scratch):
            behind_scratch.add((model, data))
    assert misses == {
        ("lenet5.fmnist", "fmnistinv10"),
        ("lenet5.fmnist", "fmnistrot10"),
        ("lenet5.fmnist", "fmnisttops20"),
        ("lenet5.fmnist", "fmnistdim20"),
        ("lenet5.fmnist", "fmnistzoom25"),
        ("resnet20.fmnist", "fmnistzoom25"),
    }
    assert not behind_scratch


def test_runs_from_the_weights_are_never_at_their_training_seed() -> None:
    """Every run from the weights is at seed 1, 2 or 3; scratch runs at 0 (docs/finetuning.md's correction)."""
    for r in _measured():
        assert r["seed"] in ((1, 2, 3) if r.get("init", "pretrained") == "pretrained" else (0,)), r


def test_a_drawn_head_at_the_weights_own_seed_replays_their_first_head(fmnist_root) -> None:
    """Why: the weights were trained at seed 0, and a run at seed 0 draws the network (new head included) as the
    pretraining did, so on the weights' own classes, renamed, the new head already knows them before any
    training; at another seed it does not."""
    experiment = _experiment()
    train, (images, labels), names = experiment.dataset("fmnist10")
    scores = {}
    for seed in (0, 1):
        model = zoo.finetune(
            "lenet5.fmnist", train, classes=names, max_epochs=1, lr=1e-12, seed=seed, num_workers=0, head_init="random"
        )
        scores[seed] = experiment.accuracy(model, images, labels)
    assert scores == {0: pytest.approx(0.879, abs=0.005), 1: pytest.approx(0.076, abs=0.005)}  # the page's numbers


def test_over_three_seeds_the_defaults_against_the_grids_best_setting() -> None:
    """docs/finetuning.md's second table, recomputed from the raw runs: every pair was run at seeds 1, 2 and 3,
    with the defaults and with the grid's best setting (picked on seed 1's test score, so the luckiest of ten or fifteen
    draws), and the defaults' mean is within a point of that setting's mean on every pair."""
    experiment = _experiment()
    runs = [r for r in _measured() if not r.get("variant") and r.get("init", "pretrained") == "pretrained"]
    pairs = {(r["model"], r["dataset"]) for r in runs if r["lr"] == "auto"}
    assert len(pairs) == 34
    misses = set()
    for pair in pairs:
        mine = [r for r in runs if (r["model"], r["dataset"]) == pair]
        best = max((r for r in mine if r["lr"] != "auto" and r["seed"] == experiment.SEED), key=lambda r: r["test_acc"])
        defaults, grid = (
            {r["seed"]: r["test_acc"] for r in mine if (r["lr"], r["max_epochs"]) == setting}
            for setting in (("auto", None), (best["lr"], best["max_epochs"]))
        )
        assert set(defaults) == set(grid) == {1, 2, 3}, pair
        if sum(defaults.values()) / 3 < sum(grid.values()) / 3 - 0.01:
            misses.add(pair)
    assert not misses, misses


def test_the_head_threshold_separates_the_sets_it_was_chosen_on() -> None:
    """Where the imprinted start's range test bottomed out, read from what each defaults run printed: at most 0.01
    on every Fashion-MNIST set of the sources' own classes, at least 0.035 on every other set the threshold
    (``HEAD_KEEP_LR``, 0.02) was chosen on, at every seed of both models."""
    experiment = _experiment()
    lows: dict[bool, list[float]] = {True: [], False: []}
    for r in _measured():
        if key_of(r)[3:6] == ("auto", None, None) and r["dataset"] in experiment.TUNING + experiment.HELD_OUT:
            lows[r["dataset"] in ("fmnist10", "fmnist25", "fmnist100")].append(experiment.head_lowest(r))
    assert len(lows[True]) == 18 and len(lows[False]) >= 18
    assert max(lows[True]) <= 0.01 < defaults.HEAD_KEEP_LR < 0.035 <= min(lows[False]), lows


def key_of(record: dict) -> tuple:
    return _experiment().key(record)


def test_auto_against_always_imprinting_and_always_drawing() -> None:
    """docs/finetuning.md's head table, recomputed from the raw runs at seed 1: per pair measured all three ways,
    the defaults' choice, and whether the start it chose was the better of the two always-X runs: on every pair
    but ResNet-20 on blurred garments (imprinted, 0.8 below the drawn head) and LeNet-5 on the four tops (drawn, 5.3
    below the imprinted head)."""
    experiment = _experiment()
    runs = [
        r
        for r in _measured_accuracy_rule()
        if r["seed"] == experiment.SEED and key_of(r)[2:5] == ("pretrained", "auto", None)
    ]
    by_pair: dict[tuple, dict] = {}
    for r in runs:
        by_pair.setdefault((r["model"], r["dataset"]), {})[r.get("variant")] = r
    wrong, compared = set(), 0
    for pair, found in by_pair.items():
        if not {None, "random", "imprint"} <= set(found):
            continue
        compared += 1
        better = "imprint" if found["imprint"]["test_acc"] > found["random"]["test_acc"] else "random"
        if found[None]["head_init"] != better:
            wrong.add(pair)
    assert compared == 30 and wrong == {("resnet20.fmnist", "fmnistblur25"), ("lenet5.fmnist", "fmnisttops20")}, wrong


def test_the_withdrawn_head_rule_as_the_page_says() -> None:
    """docs/finetuning.md's "head rule tried and withdrawn", from that rule's runs (kept apart from the table):
    on the merged garments it drew the head (separations under 1.5) and lost 3.5 and 5.6 points to the range test's
    rule at seed 1; on the turned garments it imprinted ResNet-20 (1.55), 10 points under the drawn head's mean."""
    withdrawn = json.loads((REPO / "docs" / "finetune_defaults_withdrawn_head_rule.json").read_text())
    now = [r for r in _measured_accuracy_rule() if not r.get("variant")]  # the rule of the withdrawn rule's runs

    def runs(records, model, data):
        return {r["seed"]: r for r in records if (r["model"], r["dataset"]) == (model, data)}

    for model, separation, lost in (("lenet5.fmnist", 1.48, 0.035), ("resnet20.fmnist", 0.774, 0.056)):
        then, current = runs(withdrawn, model, "fmnistcoarse24"), runs(now, model, "fmnistcoarse24")
        assert {r["head_init"] for r in then.values()} == {"random"} and current[1]["head_init"] == "imprint"
        assert {r.get("feature_separation") for r in then.values()} - {None} == {separation} and separation < 1.5
        assert current[1]["test_acc"] - then[1]["test_acc"] == pytest.approx(lost, abs=0.0006)
    then, current = runs(withdrawn, "resnet20.fmnist", "fmnistrot10"), runs(now, "resnet20.fmnist", "fmnistrot10")
    assert {r["head_init"] for r in then.values()} == {"imprint"} and {
        r.get("feature_separation") for r in then.values()
    } == {1.55}
    assert {r["head_init"] for r in current.values()} == {"random"}
    mean = lambda found: sum(r["test_acc"] for r in found.values()) / len(found)  # noqa: E731
    assert (round(100 * mean(then), 1), round(100 * mean(current), 1)) == (61.6, 71.6)


def _draws() -> list[dict]:
    return json.loads((REPO / "docs" / "finetune_head_draws.json").read_text())


def test_the_first_range_test_drawn_is_the_one_the_defaults_decided_on() -> None:
    """experiments/finetune_head_draws.py's first draw, per pair and seed, is the range test the defaults run of
    docs/finetune_defaults.json printed and decided on (the later draws see other batches): five draws each, on
    every model and dataset at seeds 1-3 (ResNet-20 on digits10 and fmnistinv10 too, which have no defaults runs)."""
    experiment = _experiment()
    printed = {
        (r["model"], r["dataset"], r["seed"]): experiment.head_lowest(r)
        for r in _measured()
        if key_of(r)[2:6] == ("pretrained", "auto", None, None)
    }
    draws = {(r["model"], r["dataset"], r["seed"]): r for r in _draws()}
    later = _experiment().AVERAGE_HELD_OUT  # built after the draws were probed: not drawn again
    printed = {k: v for k, v in printed.items() if k[1] not in later}
    assert len(draws) == 96 and len(printed) == 90 and set(printed) <= set(draws)
    for found, r in draws.items():
        assert len(r["lows"]) == len(r["losses"]) == 5, found
        if found in printed:
            assert r["lows"][0] == printed[found], found


def test_deciding_on_more_draws_as_the_page_says() -> None:
    """docs/finetuning.md's "Drawing the range test again", recomputed here: per rule (the first draw, the median of
    three or five draws' minima, the minimum of the mean of three or five curves), the pair-seeds where it took the
    start that scored lower at seed 1 (the always-drawn / always-imprinted runs, where they differ by half a point
    or more)."""
    import numpy as np

    scores: dict[tuple, dict] = {}
    for r in _measured_accuracy_rule():
        if r["lr"] == "auto" and r.get("variant") in ("random", "imprint") and r["seed"] == 1:
            scores.setdefault((r["model"], r["dataset"]), {})[r["variant"]] = r["test_acc"]
    imprint_better = {
        p: s["imprint"] > s["random"] for p, s in scores.items() if abs(s["imprint"] - s["random"]) >= 0.005
    }

    def median(lows):
        return sorted(np.inf if low is None else low for low in lows)[len(lows) // 2]

    def mean_curve(r, count):
        steps = min(len(c) for c in r["losses"][:count])
        mean = np.mean([c[:steps] for c in r["losses"][:count]], axis=0)
        return defaults.lowest_loss_rate(r["lrs"][:steps], mean.tolist()).get("lowest_loss_lr")

    rules = {
        "first": lambda r: r["lows"][0],
        "median3": lambda r: median(r["lows"][:3]),
        "median5": lambda r: median(r["lows"]),
        "mean3": lambda r: mean_curve(r, 3),
        "mean5": lambda r: mean_curve(r, 5),
    }
    judged = [r for r in _draws() if (r["model"], r["dataset"]) in imprint_better]
    wrong = {name: set() for name in rules}
    for r in judged:
        for name, rule in rules.items():
            low = rule(r)
            if (low is not None and low <= defaults.HEAD_KEEP_LR) != imprint_better[r["model"], r["dataset"]]:
                wrong[name].add((r["model"].split(".")[0], r["dataset"], r["seed"]))
    tops, blur = (
        [("lenet5", "fmnisttops20", seed) for seed in (1, 2, 3)],
        [("resnet20", "fmnistblur25", s) for s in (1, 2, 3)],
    )
    digits3, rot = ("lenet5", "digits", 3), [("lenet5", "fmnistrot10", seed) for seed in (1, 2, 3)]
    # the page's examples: the draws of two pairs overlap, and a median of three moves two decisions
    lows = {(r["model"].split(".")[0], r["dataset"], r["seed"]): r["lows"] for r in _draws()}
    assert min(low for (m, d, _), got in lows.items() if (m, d) == ("lenet5", "digits") for low in got) == 0.00891
    assert max(low for (m, d, _), got in lows.items() if (m, d) == ("lenet5", "fmnistcoarse24") for low in got) == 0.02
    assert median(lows["resnet20", "fmnistnoise25", 3][:3]) == 0.0398 and median(lows[digits3][:3]) == 0.0158
    assert (
        round(100 * (scores[("lenet5.fmnist", "digits")]["random"] - scores[("lenet5.fmnist", "digits")]["imprint"]), 1)
        == 10.4
    )
    coarse = scores[("lenet5.fmnist", "fmnistcoarse24")]
    assert round(100 * (coarse["imprint"] - coarse["random"]), 1) == 3.3
    small = ("resnet20", "fmnistsmall15")
    assert len(judged) == 87
    assert wrong == {
        "first": {*tops, *blur, ("resnet20", "fmnistnoise25", 3), (*small, 2)},
        "median3": {*tops, *blur, digits3, rot[2]},
        "median5": {*tops, *blur, digits3},
        "mean3": {*tops[1:], *blur, digits3, *rot[1:], (*small, 1)},
        "mean5": {*tops[1:], *blur, *rot},
    }, wrong


def test_no_one_divisor_fits_the_drawn_heads() -> None:
    """docs/finetuning.md on LeNet-5's fmnistsmall15 miss: over the pairs whose head the defaults drew at seeds 1-3,
    the grid's best rate (picked at seed 1) lies 4.8 to 271 times under the drawn head's range-test minimum (the
    geometric mean of the three seeds')."""
    import math

    runs = [r for r in _measured() if not r.get("variant") and r.get("init", "pretrained") == "pretrained"]
    ratios = {}
    for pair in {(r["model"], r["dataset"]) for r in runs if r["lr"] == "auto"}:
        mine = [r for r in runs if (r["model"], r["dataset"]) == pair]
        auto = [r for r in mine if r["lr"] == "auto"]
        grid = [r for r in mine if r["lr"] != "auto" and r["seed"] == 1]
        if len(auto) == 3 and grid and all(r["head_init"] == "random" for r in auto):
            lowest = math.exp(sum(math.log(r["lowest_loss_lr"]) for r in auto) / 3)
            ratios[pair] = lowest / max(grid, key=lambda r: r["test_acc"])["lr"]
    assert len(ratios) == 12
    assert round(min(ratios.values()), 1) == 4.8 and round(max(ratios.values())) == 271
