#!/usr/bin/env bash
# Run N kdjax processes on this machine, talking over loopback: the multi-host code path (jax.distributed,
# per-process data slices, global arrays, checkpoints written by every process) without a cluster.
#
#   launch/local_multiprocess.sh [options] -- KDJAX_MAIN_ARGS...
#
#   -n, --num-processes N   processes to start (default 2; env KDJAX_NUM_PROCESSES)
#   -p, --port P            coordinator port on 127.0.0.1 (default: a free one; env KDJAX_PORT)
#   --cpu-devices K         give each process K simulated CPU devices (XLA_FLAGS=--xla_force_host_platform_
#                           device_count=K, JAX_PLATFORMS=cpu); default: leave the platform alone
#   --logdir DIR            where processes 1..N-1 write process_<i>.log (default: a new temporary directory);
#                           process 0 prints to this terminal
#   --python PY             interpreter (default: python3; env PYTHON)
#   --dry-run               print the commands instead of running them
#
# Example (2 processes × 4 CPU devices = 8 devices, a data × fsdp mesh):
#   launch/local_multiprocess.sh -n 2 --cpu-devices 4 -- --config=configs/dkd.py --workdir=runs/mp \
#       --config.mesh.fsdp=2
#
# Exits with the first non-zero exit status of any process (the others are then sent SIGTERM, which makes kdjax
# checkpoint and stop; still running after KDJAX_STOP_GRACE seconds, default 60, they are killed). Ctrl-C /
# SIGTERM to this script is forwarded to every process.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e 's/^# \{0,1\}//' -e '/^set -euo/d'; }

num="${KDJAX_NUM_PROCESSES:-2}"
port="${KDJAX_PORT:-}"
cpu_devices=""
logdir=""
python="${PYTHON:-python3}"
dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    -n|--num-processes) num="$2"; shift 2 ;;
    --num-processes=*) num="${1#*=}"; shift ;;
    -p|--port) port="$2"; shift 2 ;;
    --port=*) port="${1#*=}"; shift ;;
    --cpu-devices) cpu_devices="$2"; shift 2 ;;
    --cpu-devices=*) cpu_devices="${1#*=}"; shift ;;
    --logdir) logdir="$2"; shift 2 ;;
    --logdir=*) logdir="${1#*=}"; shift ;;
    --python) python="$2"; shift 2 ;;
    --python=*) python="${1#*=}"; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "local_multiprocess.sh: unknown option $1 (kdjax arguments go after --)" >&2; exit 2 ;;
  esac
done

case "$num" in
  ''|*[!0-9]*) echo "local_multiprocess.sh: --num-processes must be a positive integer, got '$num'" >&2; exit 2 ;;
esac
if [ "$num" -lt 1 ]; then
  echo "local_multiprocess.sh: --num-processes must be >= 1" >&2; exit 2
fi
if [ -z "$port" ]; then
  if [ "$dry_run" = 1 ]; then
    port=12345
  else
    port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  fi
fi
if [ -z "$logdir" ]; then
  if [ "$dry_run" = 1 ]; then logdir="/tmp/kdjax_local_mp"; else logdir="$(mktemp -d -t kdjax_mp.XXXXXX)"; fi
fi

env_prefix=()
if [ -n "$cpu_devices" ]; then
  env_prefix=(env "XLA_FLAGS=${XLA_FLAGS:+$XLA_FLAGS }--xla_force_host_platform_device_count=$cpu_devices"
              "JAX_PLATFORMS=cpu")
fi
base=("${env_prefix[@]}" "$python" -m kdjax.main "$@" "--coordinator_address=127.0.0.1:$port"
      "--num_processes=$num")

if [ "$dry_run" = 1 ]; then
  for ((i = 1; i < num; i++)); do
    printf '%q ' "${base[@]}" "--process_id=$i"
    printf '> %q 2>&1 &\n' "$logdir/process_$i.log"
  done
  printf '%q ' "${base[@]}" "--process_id=0"
  printf '\n'
  exit 0
fi

mkdir -p "$logdir"
pids=()
stop_all() {
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
}
trap 'stop_all' INT TERM

for ((i = 1; i < num; i++)); do
  "${base[@]}" "--process_id=$i" >"$logdir/process_$i.log" 2>&1 &
  pids+=("$!")
done
"${base[@]}" "--process_id=0" &
pids+=("$!")
[ "$num" -gt 1 ] && echo "local_multiprocess.sh: $num processes on 127.0.0.1:$port; logs of processes 1..$((num - 1)) in $logdir" >&2

status=0
kill_at=""
remaining=("${!pids[@]}")
while [ "${#remaining[@]}" -gt 0 ]; do
  still=()
  for idx in "${remaining[@]}"; do
    pid="${pids[$idx]}"
    if kill -0 "$pid" 2>/dev/null; then
      still+=("$idx")
      continue
    fi
    rc=0
    wait "$pid" || rc=$?
    if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then
      status="$rc"
      proc=$(( idx == num - 1 ? 0 : idx + 1 ))
      echo "local_multiprocess.sh: process $proc exited with status $rc; stopping the others" >&2
      if [ "$proc" -ne 0 ] && [ -f "$logdir/process_$proc.log" ]; then
        tail -n 30 "$logdir/process_$proc.log" >&2
      fi
      stop_all
      kill_at=$((SECONDS + ${KDJAX_STOP_GRACE:-60}))  # then SIGKILL: a peer may hang in a collective
    fi
  done
  if [ -n "$kill_at" ] && [ "$SECONDS" -ge "$kill_at" ]; then
    for idx in "${still[@]+"${still[@]}"}"; do kill -KILL "${pids[$idx]}" 2>/dev/null || true; done
  fi
  remaining=("${still[@]+"${still[@]}"}")
  [ "${#remaining[@]}" -gt 0 ] && sleep 0.5
done
exit "$status"
