#!/usr/bin/env bash
# A/B of XLA flag sets on `python -m kdjax.tools.bench`, alternating in separate processes (kdjax's own flags off).
#   benchmarks/ab_flags.sh ROUNDS STEPS "FLAGS_A" "FLAGS_B" ...      ("" = no flags)
# Prints one line per run and, per variant, the median img/s ratio to the first variant over rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=$1; STEPS=$2; shift 2
VARIANTS=("$@")
N=${#VARIANTS[@]}
CONFIG=${CONFIG:-configs/dkd.py:cifar100}
TMP=$(mktemp)
for ((i = 0; i < ROUNDS; i++)); do
  for ((j = 0; j < N; j++)); do
    k=$(((j + i) % N))
    line=$(KDJAX_XLA_FLAGS=0 XLA_FLAGS="${VARIANTS[$k]}" python -m kdjax.tools.bench --config="$CONFIG" --batch=64 \
           --steps="$STEPS" --warmup=1 --config.models.Teacher.init=train 2>/dev/null | tail -1)
    echo "$i $k $line" | tee -a "$TMP" | cut -c1-160
  done
done
python - "$TMP" "${VARIANTS[@]}" <<'PY'
import json, statistics, sys
rows = [l.split(" ", 2) for l in open(sys.argv[1])]
variants = sys.argv[2:]
res = {}
for i, k, line in rows:
    res.setdefault(int(i), {})[int(k)] = json.loads(line)
for k, v in enumerate(variants):
    ratios = [r[k]["images_per_s"] / r[0]["images_per_s"] for r in res.values() if k in r and 0 in r]
    ips = [r[k]["images_per_s"] for r in res.values() if k in r]
    mem = [r[k]["peak_rss_mb"] for r in res.values() if k in r]
    print(f"[{k}] {v!r}: img/s median {statistics.median(ips):.2f}, ratio to [0] {statistics.median(ratios):.3f} "
          f"({', '.join(f'{x:.2f}' for x in ratios)}), peak RSS median {statistics.median(mem):.0f} MB")
PY
