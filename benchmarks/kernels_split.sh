#!/usr/bin/env bash
# The per-kernel table of benchmarks/kernels.py with PyTorch and kdjax in SEPARATE processes, alternately
# (on a quiet machine the two frameworks' thread pools slow each other down inside one process).
#
#   benchmarks/kernels_split.sh [PAIRS] [ROUNDS]      (defaults: 2 pairs of processes, 2 rounds each)
#
# Each pair runs `kernels.py --impls=XLA,oneDNN` and `kernels.py --impls=torch` (the order alternating pair by
# pair), each appending its JSON lines; the table is the median over every round of both, with ratios to PyTorch.
# Output: benchmarks/results/kernels-split-<time>.{jsonl,txt}.
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-2}
ROUNDS=${2:-2}
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=benchmarks/results/kernels-split-$STAMP
: > "$OUT.jsonl"
{
  echo "start: $(uptime)"
  for ((i = 0; i < PAIRS; i++)); do
    order=("XLA,oneDNN" "torch")
    if (( i % 2 )); then order=("torch" "XLA,oneDNN"); fi
    for impls in "${order[@]}"; do
      python benchmarks/kernels.py --impls="$impls" --rounds="$ROUNDS" --json="$OUT.jsonl" >/dev/null
      echo "pair $((i + 1)) $impls done: load $(cut -d' ' -f1-3 /proc/loadavg)"
    done
  done
  python - "$OUT.jsonl" <<'PY'
import collections, json, statistics, sys
ms = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    row = json.loads(line)
    for impl, values in row["ms_all"].items():
        ms[row["part"]][impl] += values
impls = [k for k in ("XLA", "oneDNN", "torch") if any(k in v for v in ms.values())]
print(f"{'part (batch 64, separate processes), ms':<44}" + "".join(f"{k:>8}" for k in impls)
      + "".join(f"{k + '/torch':>13}" for k in impls if k != "torch"))
sums = collections.defaultdict(lambda: collections.defaultdict(float))
for part, by in ms.items():
    med = {k: statistics.median(by[k]) for k in impls}
    kind = part.rsplit(" ", 1)[-1] if part.startswith("conv ") else part
    for k in impls:
        sums[kind][k] += med[k]
    print(f"{part:<44}" + "".join(f"{med[k]:>8.1f}" for k in impls)
          + "".join(f"{med[k] / med['torch']:>13.2f}" for k in impls if k != "torch"))
print("\nsummed over the distinct convolutions (each once) and the two model parts, ms")
for kind, by in sums.items():
    print(f"{kind:<44}" + "".join(f"{by[k]:>8.1f}" for k in impls)
          + "".join(f"{by[k] / by['torch']:>13.2f}" for k in impls if k != "torch"))
PY
  echo "end: $(uptime)"
} | tee "$OUT.txt"
