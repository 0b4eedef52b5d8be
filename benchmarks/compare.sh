#!/usr/bin/env bash
# kdjax vs PyTorch on the same step, alternately, in separate processes (see benchmarks/README.md).
#
#   benchmarks/compare.sh [PAIRS] [STEPS]        (defaults: 3 pairs, 20 timed steps each)
#
# Each round runs, in turn: kdjax (python -m kdjax.tools.bench), PyTorch channels-first, PyTorch channels-last
# (benchmarks/torch_reference.py); the order rotates each round so no one always runs first. Every JSON line
# goes to $OUT (default benchmarks/results/compare-<time>.jsonl); the summary takes, per round, the faster
# PyTorch layout (and that run's memory), and prints the median over rounds of kdjax/PyTorch for img/s and
# peak RSS. Extra environment: CONFIG (default configs/dkd.py:cifar100), BATCH (64), THREADS (torch threads;
# default: what PyTorch picks, = the CPU count, as XLA uses every core).
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-3}
STEPS=${2:-20}
CONFIG=${CONFIG:-configs/dkd.py:cifar100}
BATCH=${BATCH:-64}
THREADS=${THREADS:-0}
mkdir -p benchmarks/results
OUT=${OUT:-benchmarks/results/compare-$(date +%Y%m%d-%H%M%S).jsonl}
: > "$OUT"
python -c "import torch" 2>/dev/null || { echo "compare.sh needs PyTorch: pip install torch==2.13.0" >&2; exit 1; }

run_kdjax() { python -m kdjax.tools.bench --config="$CONFIG" --batch="$BATCH" --steps="$STEPS" 2>/dev/null | tail -1; }
run_torch() { python benchmarks/torch_reference.py --batch="$BATCH" --steps="$STEPS" --threads="$THREADS" "$@" | tail -1; }

for ((i = 0; i < PAIRS; i++)); do
  order=("kdjax" "nchw" "nhwc")
  r=$((i % 3)); order=("${order[@]:r}" "${order[@]:0:r}")
  for which in "${order[@]}"; do
    case $which in
      kdjax) line=$(run_kdjax) ;;
      nchw) line=$(run_torch) ;;
      nhwc) line=$(run_torch --channels_last) ;;
    esac
    echo "{\"round\": $i, \"run\": \"$which\", \"result\": $line}" | tee -a "$OUT"
  done
done

python - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rounds = sorted({r["round"] for r in rows})
get = lambda i, w: next(r["result"] for r in rows if r["round"] == i and r["run"] == w)
speed, mem, table = [], [], []
for i in rounds:
    k, a, b = get(i, "kdjax"), get(i, "nchw"), get(i, "nhwc")
    t = max((a, b), key=lambda r: r["images_per_s"])
    speed.append(k["images_per_s"] / t["images_per_s"]); mem.append(k["peak_rss_mb"] / t["peak_rss_mb"])
    table.append((i, k["images_per_s"], a["images_per_s"], b["images_per_s"], speed[-1], k["peak_rss_mb"],
                  a["peak_rss_mb"], b["peak_rss_mb"], mem[-1]))
print(f"{'round':>5} {'kdjax img/s':>11} {'torch NCHW':>10} {'torch NHWC':>10} {'speed x':>8} "
      f"{'kdjax MB':>8} {'NCHW MB':>8} {'NHWC MB':>8} {'mem x':>6}")
for r in table:
    print(f"{r[0]:>5} {r[1]:>11.2f} {r[2]:>10.2f} {r[3]:>10.2f} {r[4]:>8.2f} {r[5]:>8.0f} {r[6]:>8.0f} {r[7]:>8.0f} "
          f"{r[8]:>6.2f}")
print(f"median kdjax/PyTorch (faster layout) over {len(rounds)} rounds: img/s {statistics.median(speed):.2f}x, "
      f"peak RSS {statistics.median(mem):.2f}x   [{sys.argv[1]}]")
PY
