#!/usr/bin/env bash
# kdjax vs PyTorch on the same step, alternately, in separate processes (see benchmarks/README.md).
#
#   benchmarks/compare.sh [PAIRS] [STEPS]        (defaults: 3 pairs, 20 timed steps each)
#
# Each round runs, in turn: kdjax (python -m kdjax.tools.bench), PyTorch channels-first, PyTorch channels-last
# (benchmarks/torch_reference.py); the order rotates each round so no one always runs first. Every JSON line
# goes to $OUT (default benchmarks/results/compare-<time>.jsonl) with the 1-minute load average before and after
# the run; the summary takes, per round, the faster PyTorch layout (and that run's memory), and prints the median
# over rounds of kdjax/PyTorch for img/s and peak RSS. Extra environment: CONFIG (default configs/dkd.py:cifar100),
# BATCH (64), THREADS (torch threads; default: what PyTorch picks, = the CPU count, as XLA uses every core), ONEDNN
# (1: each round also runs kdjax with KDJAX_CONV=onednn, the oneDNN FFI convolutions, as "kdjax-onednn"; default 1
# when they are built, else 0), KDJAX_ARGS (extra kdjax.tools.bench flags; default
# --config.models.Teacher.init=train).
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
if [ -z "${ONEDNN:-}" ]; then
  ONEDNN=$(python -c "from kdjax.kernels import onednn; print(int(onednn.available()))" 2>/dev/null || echo 0)
fi

# The presets' frozen teacher must name an init; 'train' passes the check and the bench times random weights.
read -r -a KDJAX_ARGS <<< "${KDJAX_ARGS:---config.models.Teacher.init=train}"
ERR=$(mktemp)
run_kdjax() {  # a failed bench says why (its last stderr lines) instead of ending the script silently
  python -m kdjax.tools.bench --config="$CONFIG" "${KDJAX_ARGS[@]}" --batch="$BATCH" --steps="$STEPS" 2>"$ERR" \
    | tail -1 \
    || { echo "kdjax.tools.bench failed:" >&2; tail -3 "$ERR" >&2; exit 1; }
}
run_kdjax_onednn() { KDJAX_CONV=onednn run_kdjax; }
run_torch() { python benchmarks/torch_reference.py --batch="$BATCH" --steps="$STEPS" --threads="$THREADS" "$@" | tail -1; }

for ((i = 0; i < PAIRS; i++)); do
  order=("kdjax" "nchw" "nhwc")
  if [ "$ONEDNN" = 1 ]; then order+=("kdjax-onednn"); fi
  r=$((i % ${#order[@]})); order=("${order[@]:r}" "${order[@]:0:r}")
  for which in "${order[@]}"; do
    load_before=$(cut -d' ' -f1 /proc/loadavg)
    case $which in
      kdjax) line=$(run_kdjax) ;;
      kdjax-onednn) line=$(run_kdjax_onednn) ;;
      nchw) line=$(run_torch) ;;
      nhwc) line=$(run_torch --channels_last) ;;
    esac
    load="[$load_before, $(cut -d' ' -f1 /proc/loadavg)]"   # 1-minute load average before and after the run
    echo "{\"round\": $i, \"run\": \"$which\", \"load\": $load, \"result\": $line}" | tee -a "$OUT"
  done
done

python - "$OUT" <<'PY'
import json, os, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rounds = sorted({r["round"] for r in rows})
ours = [w for w in ("kdjax", "kdjax-onednn") if any(r["run"] == w for r in rows)]
get = lambda i, w: next(r["result"] for r in rows if r["round"] == i and r["run"] == w)
speed = {w: [] for w in ours}
mem = {w: [] for w in ours}
print(f"{'round':>5} {'run':>12} {'img/s':>7} {'torch NCHW':>10} {'torch NHWC':>10} {'speed x':>8} "
      f"{'MB':>6} {'NCHW MB':>8} {'NHWC MB':>8} {'mem x':>6}")
for i in rounds:
    a, b = get(i, "nchw"), get(i, "nhwc")
    t = max((a, b), key=lambda r: r["images_per_s"])
    loads = [l for r in rows if r["round"] == i for l in r.get("load", [])]
    if loads:
        print(f"{i:>5} load average during the round: {min(loads):.1f}-{max(loads):.1f} (nproc {os.cpu_count()})")
    for w in ours:
        k = get(i, w)
        speed[w].append(k["images_per_s"] / t["images_per_s"]); mem[w].append(k["peak_rss_mb"] / t["peak_rss_mb"])
        print(f"{i:>5} {w:>12} {k['images_per_s']:>7.2f} {a['images_per_s']:>10.2f} {b['images_per_s']:>10.2f} "
              f"{speed[w][-1]:>8.2f} {k['peak_rss_mb']:>6.0f} {a['peak_rss_mb']:>8.0f} {b['peak_rss_mb']:>8.0f} "
              f"{mem[w][-1]:>6.2f}")
for w in ours:
    print(f"median {w}/PyTorch (faster layout) over {len(rounds)} rounds: img/s {statistics.median(speed[w]):.2f}x, "
          f"peak RSS {statistics.median(mem[w]):.2f}x   [{sys.argv[1]}]")
if len(ours) == 2:
    rel = [get(i, "kdjax-onednn")["images_per_s"] / get(i, "kdjax")["images_per_s"] for i in rounds]
    print(f"median kdjax-onednn/kdjax: img/s {statistics.median(rel):.2f}x")
PY
