#!/usr/bin/env bash
# What each CPU performance change gains on kdjax's real DKD train step, alternately in separate processes.
#
#   benchmarks/ablation.sh [ROUNDS] [STEPS]        (defaults: 3 rounds, 10 timed steps per run)
#
# Variants (each a full `python -m kdjax.tools.bench` process; the order rotates every round):
#   plain     kdjax's flags off (KDJAX_XLA_FLAGS=0), flax-style BatchNorm, lax.conv VJP (config.kernels='xla')
#   flags     + kdjax/runtime/xla_flags.py's XLA:CPU flags (YNNPACK fusions off, scheduler, emitters)
#   flags+bn  + the zoo BatchNorm's hand-written backward pass (kernels='cpu_tuned' with KDJAX_FAST_CONV=0)
#   all       + kdjax/kernels/conv.py's VJP for every convolution (kernels='cpu_tuned': what 'auto' picks on CPU)
# The kernel sets are chosen by config.kernels (kdjax/kernels/__init__.py); KDJAX_FAST_BN / KDJAX_FAST_CONV
# (0/1) override one part of the chosen set, which is how flags+bn is expressed.
# Prints per variant the median img/s and peak RSS, and the median over rounds of img/s relative to `plain`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
STEPS=${2:-10}
CONFIG=${CONFIG:-configs/dkd.py:cifar100}
OUT=${OUT:-benchmarks/results/ablation-$(date +%Y%m%d-%H%M%S).jsonl}
mkdir -p benchmarks/results
: > "$OUT"
variant_env() {
  case $1 in
    plain) echo "KDJAX_XLA_FLAGS=0" ;;
    flags) echo "" ;;
    flags+bn) echo "KDJAX_FAST_CONV=0" ;;
    all) echo "" ;;
  esac
}
variant_kernels() {
  case $1 in
    plain|flags) echo "xla" ;;
    *) echo "cpu_tuned" ;;
  esac
}
for ((i = 0; i < ROUNDS; i++)); do
  order=(plain flags flags+bn all)
  r=$((i % 4)); order=("${order[@]:r}" "${order[@]:0:r}")
  for v in "${order[@]}"; do
    # shellcheck disable=SC2046
    line=$(env $(variant_env "$v") python -m kdjax.tools.bench --config="$CONFIG" --batch=64 --steps="$STEPS" \
      --config.kernels="$(variant_kernels "$v")" --mfu=false --config.models.Teacher.init=train 2>/dev/null | tail -1)
    echo "{\"round\": $i, \"variant\": \"$v\", \"result\": $line}" | tee -a "$OUT" | cut -c1-120
  done
done
python - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rounds = sorted({r["round"] for r in rows})
get = lambda i, v: next(r["result"] for r in rows if r["round"] == i and r["variant"] == v)
print(f"{'variant':>9} {'img/s (median)':>14} {'vs plain':>8} {'peak RSS MB':>11}")
for v in ("plain", "flags", "flags+bn", "all"):
    ips = [get(i, v)["images_per_s"] for i in rounds]
    rel = [get(i, v)["images_per_s"] / get(i, "plain")["images_per_s"] for i in rounds]
    rss = [get(i, v)["peak_rss_mb"] for i in rounds]
    print(f"{v:>9} {statistics.median(ips):>14.2f} {statistics.median(rel):>7.2f}x {statistics.median(rss):>11.0f}")
print(f"[{sys.argv[1]}]")
PY
