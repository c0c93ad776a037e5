#!/usr/bin/env bash
# Run THERE, on a lent GPU machine, as one call of the device tool (bench/device_prepare.sh says
# how). The measurements issues 4 and 5 ask for, most important first; each is cut at the time
# left of BUDGET_S, so one call brings back whatever finished: one log per step in $OUT (at most
# 8 files come back), each holding the Markdown table for docs/benchmarks.md.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-var/bench/out}
BUDGET_S=${BUDGET_S:-570}
mkdir -p "$OUT"
# SIZE=tiny DEVICE=cpu WHEELS= rehearses the whole call on a development machine in a few minutes.
SIZE=${SIZE:-real}
DEVICE=${DEVICE:-cuda}
WHEELS=${WHEELS-.whl}
if [[ -n $WHEELS ]]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$WHEELS"/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    python3 -c "import torch, diffusers, transformers, peft
print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__,
      'peft', peft.__version__)"
} 2>&1 | tee "$OUT/versions.txt"

measure() {  # name, longest it may take (s), command...
    local name=$1 cap=$2 left
    shift 2
    left=$((BUDGET_S - SECONDS))
    if ((left < 45)); then
        echo "skipped: ${left} s of the budget left" | tee "$OUT/$name.log"
        return
    fi
    ((cap > left)) && cap=$left
    echo "== $name at ${SECONDS} s, for at most ${cap} s"
    timeout --signal=INT --kill-after=10 "$cap" "$@" 2>&1 | tee "$OUT/$name.log"
}

train=(python3 bench/train_speed.py --size "$SIZE" --device "$DEVICE")
sample=(python3 bench/sample_speed.py "--$SIZE" --device "$DEVICE")
measure train-sd15-b1 150 "${train[@]}" --kinds sd15 --batches 1
measure train-sd15-full 240 "${train[@]}" --kinds= --full-run
# Generation and editing with the subject the full run trained (LoRA + token on both sides), if it finished.
trained=()
[[ -f var/bench/runs/full/manifest.json ]] && trained=(--model var/bench/runs/full)
measure sample-sd15 150 "${sample[@]}" --kinds sd15 --photo var/bench/data/edit-photo.jpg "${trained[@]}"
# docs/benchmarks.md predicts eager batch-1 steps to be launch-bound (identity ~1.13x plain): does
# torch.compile's fusion close that gap? 10 untimed warm-up steps absorb the compilation.
measure train-sd15-compile 180 "${train[@]}" --kinds sd15 --batches 1 --variants identity --compile --warmup 10
measure sample-sdxl 120 "${sample[@]}" --kinds sdxl
measure train-sd15-b4 120 "${train[@]}" --kinds sd15 --batches 4
measure train-sdxl-b1 150 "${train[@]}" --kinds sdxl --batches 1
echo "== done at ${SECONDS} s"
