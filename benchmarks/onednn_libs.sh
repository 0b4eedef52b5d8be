#!/usr/bin/env bash
# oneDNN builds compared on the cifar100 preset's convolutions, alternately in separate processes.
#
#   ONEDNN_PYPI=/path/to/venv benchmarks/onednn_libs.sh [ROUNDS] [REPS]
#
# Runs, in rotating order each round: the installed kernels (Debian libdnnl-dev) with XLA-pool threading and with
# oneDNN's OpenMP threads, and — when ONEDNN_PYPI names a venv with `pip install onednn onednn-devel` — conv.cc
# built against that wheel's oneDNN (its own TBB threads; the wheel is a SYCL build, so a CPU engine needs Intel's
# OpenCL CPU runtime from the same venv: OCL_ICD_FILENAMES). One JSON line per run to $OUT
# (benchmarks/results/onednn-libs-<time>.jsonl) from benchmarks/onednn_kernels_only.py, then a table of medians.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
REPS=${2:-5}
OUT=${OUT:-benchmarks/results/onednn-libs-$(date +%Y%m%d-%H%M%S).jsonl}
mkdir -p benchmarks/results
: > "$OUT"
runs=("debian-xla" "debian-omp")
if [ -n "${ONEDNN_PYPI:-}" ]; then
  PYPI_SO=$(mktemp -d)/onednn_pypi.so
  g++ -O2 -std=c++17 -shared -fPIC -isystem "$(python -c 'import jax; print(jax.ffi.include_dir())')" \
    -isystem "$ONEDNN_PYPI/include" kdjax/kernels/onednn/conv.cc -o "$PYPI_SO" -L"$ONEDNN_PYPI/lib" -ldnnl \
    -Wl,-rpath,"$ONEDNN_PYPI/lib"
  runs+=("pypi")
fi
for ((i = 0; i < ROUNDS; i++)); do
  r=$((i % ${#runs[@]})); order=("${runs[@]:r}" "${runs[@]:0:r}")
  for v in "${order[@]}"; do
    case $v in
      debian-xla) python benchmarks/onednn_kernels_only.py --threading=xla --reps="$REPS" 2>/dev/null | tail -1 ;;
      debian-omp) python benchmarks/onednn_kernels_only.py --threading=omp --reps="$REPS" 2>/dev/null | tail -1 ;;
      pypi) OCL_ICD_FILENAMES="$ONEDNN_PYPI/lib/libintelocl.so" LD_LIBRARY_PATH="$ONEDNN_PYPI/lib" \
              python benchmarks/onednn_kernels_only.py --library="$PYPI_SO" --threading=omp --reps="$REPS" \
              2>/dev/null | grep '^{' | tail -1 ;;
    esac >> "$OUT"
    echo "round $i: $v done" >&2
  done
done
python - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
groups = {}
for r in rows:
    groups.setdefault(r["info"].split(" xla_pool")[0], []).append(r)
keys = list(groups)
for k in keys:
    print(f"[{keys.index(k)}] {k}  ({len(groups[k])} runs, load {[round(r['load'], 1) for r in groups[k]]})")
parts = list(rows[0]["wall_ms"])
print(f"{'median ms: wall [i] ... | CPU [i] ...':<34}" + "".join(f"{'wall ' + str(i):>9}" for i in range(len(keys)))
      + "".join(f"{'cpu ' + str(i):>9}" for i in range(len(keys))))
total = {(m, k): 0.0 for m in ("wall_ms", "cpu_ms") for k in keys}
for p in parts:
    line = f"{p:<34}"
    for m in ("wall_ms", "cpu_ms"):
        for k in keys:
            v = statistics.median(r[m][p] for r in groups[k])
            total[(m, k)] += v
            line += f"{v:>9.1f}"
    print(line)
print(f"{'sum':<34}" + "".join(f"{total[(m, k)]:>9.1f}" for m in ("wall_ms", "cpu_ms") for k in keys))
print(f"[{sys.argv[1]}]")
PY
