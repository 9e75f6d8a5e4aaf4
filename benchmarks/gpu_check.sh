#!/usr/bin/env bash
# The first GPU, in one prepared script: the `gpu` tests, the GPU benchmark, then the long training runs the
# CPU could not afford, each until the budget runs out, checkpointed so that the next lease resumes it.
#
#   bash benchmarks/gpu_check.sh BUDGET_S              # on a GPU machine; everything lands in $OUT or ./gpu_out
#   bash benchmarks/gpu_check.sh 60 --dry-run          # the same on the CPU with tiny sizes, the first run alone (CI)
#   bash benchmarks/gpu_check.sh --prepare             # here, before a lease: wheels and data the device lacks
#
# Output folder ($OUT if set, else ./gpu_out): gpu_check.log (every phase's output), summary.txt (the test
# counts, the benchmark's ratios, each run's state) and state.tar.part-* (every started run's folder: its
# last/best checkpoints, logs, and its card when it beat the shipped one), in parts under 15 MiB because a
# device returns at most 8 flat files of 16 MiB. To resume in the next lease, copy the parts into ./gpu_state/
# (or $GPU_STATE) before calling: each run goes on from its last.ckpt with --ckpt_path; finished ones are skipped.
# A run writes its card only when it beats the shipped one (--card.keep_better true against a copy of the
# shipped card in its folder); copy <run>/model_cards/<name> from the state over model_cards/ to ship it.
# On the device (no zoo install, no internet): --prepare fills .whl/ (jsonargparse, platformdirs, pycocotools
# for Python 3.12) and .fmnist/ (Fashion-MNIST as xz, 26 MB); name both in the run's carry.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PYTHON="${PYTHON:-$([ -x .venv/bin/python ] && echo "$REPO/.venv/bin/python" || command -v python3)}"
WHEELS=(jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0 platformdirs==4.14.9 pycocotools==2.0.11)
RUNS=(  # card name : recipe (the restart recipes go on from the shipped weights: another cosine cycle)
    resnet20.fmnist:recipes/resnet20_fmnist_restart.yaml
    efficientnet_lite.fmnist:recipes/efficientnet_lite_fmnist_restart.yaml
    alexnet_lite.fmnist:recipes/alexnet_lite_fmnist_restart.yaml
    vit_lite_conv.fmnist:recipes/vit_lite_conv_fmnist.yaml
    swin_lite.fmnist:recipes/swin_lite_fmnist.yaml
    swin_lite_conv.fmnist:recipes/swin_lite_conv_fmnist.yaml
)

if [ "${1:-}" = "--prepare" ]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
    grep -qx '/.fmnist/' .git/info/exclude 2>/dev/null || echo '/.fmnist/' >>.git/info/exclude
    mkdir -p .whl .fmnist
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "${WHEELS[@]}" || exit 1
    for f in "${ZOO_DATA:-/usr/share/datasets/fashion-mnist}"/*-ubyte.gz; do
        [ -f ".fmnist/$(basename "$f" .gz).xz" ] || zcat "$f" | xz -9e -T0 >".fmnist/$(basename "$f" .gz).xz" || exit 1
    done
    du -sh .whl .fmnist && echo "carry: [\".whl\", \".fmnist\"] (the tree that travels is limited to 64 MiB)"
    exit 0
fi

BUDGET="${1:?usage: gpu_check.sh BUDGET_S [--dry-run] | --prepare}"
DRY=0
[ "${2:-}" = "--dry-run" ] && DRY=1
START=$(date +%s)
OUT_DIR="$(mkdir -p "${OUT:-$REPO/gpu_out}" && cd "${OUT:-$REPO/gpu_out}" && pwd)"
WORK="$OUT_DIR/work"
STATE="${GPU_STATE:-$REPO/gpu_state}"
LOG="$OUT_DIR/gpu_check.log"
SUMMARY="$OUT_DIR/summary.txt"
rm -rf "$WORK" "$OUT_DIR"/state.tar.part-* && mkdir -p "$WORK" && : >"$LOG" && : >"$SUMMARY"
left() { echo $((START + BUDGET - $(date +%s))); }
say() { echo "$*" | tee -a "$SUMMARY" "$LOG"; }
phase() {  # phase SECONDS COMMAND...: run with a timeout, output to the log and the terminal
    echo "== $(date +%T) ${*:2}" | tee -a "$LOG"
    timeout --signal=TERM --kill-after=20 "$1" "${@:2}" 2>&1 | tee -a "$LOG"
}

# ---- the device's missing pieces: carried wheels and Fashion-MNIST, zoo from this tree ------------------
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" .whl/*.whl >>"$LOG" 2>&1
    export PYTHONPATH="$PYTHONPATH:$WORK/site"
fi
if compgen -G ".fmnist/*.xz" >/dev/null && [ -z "${ZOO_DATA:-}" ]; then
    mkdir -p "$WORK/fmnist" && for f in .fmnist/*.xz; do xz -dc "$f" >"$WORK/fmnist/$(basename "$f" .xz)"; done
    export ZOO_DATA="$WORK/fmnist"
fi
for run in "${RUNS[@]}"; do  # checked up front: a renamed recipe or card fails the dry run, not the lease
    [ -f "${run#*:}" ] && [ -f "model_cards/${run%%:*}/metrics.json" ] || { say "missing: ${run#*:} or model_cards/${run%%:*}"; exit 1; }
done
say "gpu_check: budget ${BUDGET} s, dry run ${DRY}, output $OUT_DIR, python $("$PYTHON" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())')"

# ---- 1. the gpu tests (skipped without CUDA), 2. the benchmark -----------------------------------------------
TESTS=$((DRY ? 180 : BUDGET * 2 / 5))  # the dry run's phases have room for a busy CI machine
phase "$TESTS" "$PYTHON" -m pytest -m gpu tests/test_gpu.py -q -p no:cacheprovider -o addopts="-ra"
status=$?
say "gpu tests: exit $status; $(grep -E '(passed|failed|skipped|error)' "$LOG" | tail -1)"
phase "$((DRY ? 180 : BUDGET / 5))" "$PYTHON" benchmarks/gpu.py $([ $DRY = 1 ] && echo --dry-run)
say "benchmark: exit $?"
grep -E '^(RATIO|plain|zoo)' "$LOG" | sed 's/^/  /' | tee -a "$SUMMARY"

# ---- 3. the long runs, in order, while the budget lasts ----------------------------------------------------
pack() {  # every run folder (checkpoints, logs, cards) into parts of at most 15 MiB
    rm -f "$OUT_DIR"/state.tar.part-*
    (cd "$WORK" && tar -cf - --exclude=site --exclude=fmnist .) | split -b 15M - "$OUT_DIR/state.tar.part-"
}
if compgen -G "$STATE/state.tar.part-*" >/dev/null; then
    cat "$STATE"/state.tar.part-* | tar -xf - -C "$WORK" && say "resumed the state in $STATE"
fi
if ! "$PYTHON" -c "from zoo.data.fashion_mnist import load_split; load_split('test')" >>"$LOG" 2>&1; then
    say "long runs: skipped, Fashion-MNIST not found (bash benchmarks/gpu_check.sh --prepare, carry .fmnist)"
    RUNS=()
fi
MIN_RUN=$((DRY ? 5 : 90))  # a run is not started with less left than this
for run in "${RUNS[@]}"; do
    name="${run%%:*}" recipe="$REPO/${run#*:}" dir="$WORK/${run%%:*}"
    if [ -f "$dir/done" ]; then say "$name: finished in an earlier lease"; continue; fi
    first=$([ $DRY = 1 ] && [ "$run" = "${RUNS[0]}" ] && echo 1)  # the dry run always covers its first run
    if [ -z "$first" ] && [ "$(left)" -lt "$MIN_RUN" ]; then say "$name: not started, $(left) s left"; continue; fi
    # the dry run starts its first run alone: how many others the time left allows depends on the machine's speed,
    # and their checkpoints took the state past what a device returns (8 files) on a fast CI machine
    if [ $DRY = 1 ] && [ -z "$first" ]; then say "$name: not started, the dry run covers its first run"; continue; fi
    mkdir -p "$dir/model_cards/$name"  # the shipped card's numbers, for --card.keep_better to beat
    [ -f "$dir/model_cards/$name/metrics.json" ] || cp "$REPO/model_cards/$name/metrics.json" "$dir/model_cards/$name/"
    args=(fit --config "$recipe" --trainer.accelerator gpu --trainer.precision bf16-mixed
        --trainer.deterministic false --trainer.benchmark true --trainer.enable_progress_bar false
        --card.name "$name" --card.output_dir "$dir/model_cards" --card.keep_better true)
    if grep -q '^ *pretrained: runs/' "$recipe"; then  # a restart recipe: the next cycle from the shipped weights
        args+=(--model.init_args.pretrained "$REPO/model_cards/$name")
    fi
    if [ $DRY = 1 ]; then
        args+=(--trainer.accelerator cpu --trainer.max_epochs 1 --trainer.limit_train_batches 2
            --trainer.limit_val_batches 1 --trainer.limit_test_batches 1 --data.init_args.batch_size 8
            --trainer.enable_model_summary false)
    fi
    legs=$([ -n "$first" ] && echo 2 || echo 1)  # the dry run stops its first run after an epoch, then resumes it
    for leg in $(seq "$legs"); do
        extra=()
        last=$(ls -t "$dir"/runs/zoo/*/checkpoints/last.ckpt 2>/dev/null | head -1)
        if [ -n "$last" ]; then
            extra=(--ckpt_path "$last") && say "$name: resuming from ${last#"$WORK"/}"
        fi
        [ "$legs" = 2 ] && [ "$leg" = 1 ] && extra+=(--card.name null)  # the card once, at the end
        [ "$leg" = 2 ] && extra+=(--trainer.max_epochs 2)
        (cd "$dir" && phase "$([ -n "$first" ] && echo 180 || left)" "$PYTHON" -m zoo.cli "${args[@]}" "${extra[@]}") >>"$dir/fit.log"
        status=$?
    done
    if [ "$status" = 0 ]; then
        touch "$dir/done"
        say "$name: finished; $(grep -h -o 'wrote .*\|kept .*' "$dir/fit.log" | tail -1)"
    else
        say "$name: stopped (exit $status) with $(left) s left; resumable from its last.ckpt"
    fi
    pack
done
pack
say "gpu_check: done in $(($(date +%s) - START)) s; state in $(ls "$OUT_DIR" | grep -c part) part(s)"
[ -n "${OUT:-}" ] && rm -rf "$WORK"  # a device returns flat files only: the tree is in the state parts
exit 0
