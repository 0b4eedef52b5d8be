#!/usr/bin/env bash
# Train kdjax on a Cloud TPU VM slice (single host or pod slice): create the slice, copy this repository to every
# worker, install, run `python -m kdjax.main` on all workers at once, follow worker 0's log, delete the slice.
#
#   launch/tpu_pod.sh COMMAND [options] [-- extra kdjax.main args]
#
# Commands:
#   create    gcloud compute tpus tpu-vm create (accelerator type, runtime version, --spot)
#   copy      pack this repository (without .git) and unpack it in REMOTE_DIR on every worker
#   install   on every worker: Fashion-MNIST + requirements.txt + jax[tpu] of the pinned version (install.sh)
#   run       start kdjax.main on every worker (detached: survives this terminal), then follow worker 0's log
#   logs      follow worker 0's log (Ctrl-C stops following, not training)
#   stop      SIGTERM kdjax on every worker: it checkpoints and exits; `run` again resumes
#   delete    delete the slice (asks first unless --yes)
#   up        create + copy + install + run
#
# Options (each also from the environment variable in brackets):
#   --name NAME              TPU name [TPU_NAME] (required)
#   --zone ZONE              e.g. us-central2-b [TPU_ZONE or ZONE] (required)
#   --project PROJECT        [TPU_PROJECT or PROJECT] (default: gcloud's configured project)
#   --accelerator-type TYPE  e.g. v4-32, v5litepod-16 [TPU_ACCELERATOR_TYPE] (create; default v4-8)
#   --version VERSION        TPU VM runtime, e.g. tpu-ubuntu2204-base [TPU_VERSION] (create)
#   --spot                   create a Spot slice [TPU_SPOT=1]; kdjax checkpoints on the preemption SIGTERM
#   --config CONFIG          e.g. configs/dkd.py:imagenet [KDJAX_CONFIG] (run; default configs/dkd.py)
#   --workdir DIR            run directory that EVERY worker sees: a gcsfuse mount or NFS/Filestore path such as
#                            /mnt/shared/runs/dkd [KDJAX_WORKDIR] (run; required)
#   --remote-dir DIR         where the code goes on the workers [KDJAX_REMOTE_DIR] (default: kdjax, in $HOME)
#   --log FILE               log file on each worker [KDJAX_LOG] (default: kdjax_run.log, in $HOME)
#   --yes                    delete without asking
#   --dry-run                print the gcloud commands instead of running them
#
# Example:
#   launch/tpu_pod.sh up --name=kd-v4-32 --zone=us-central2-b --accelerator-type=v4-32 \
#       --version=tpu-ubuntu2204-base --config=configs/dkd.py:imagenet --workdir=/mnt/shared/runs/dkd_r34_r18 \
#       -- --config.models.Teacher.init=/mnt/shared/weights/ResNet34_pretrained.pdparams \
#          --config.data.tfds_data_dir=gs://my-bucket/tensorflow_datasets
#   launch/tpu_pod.sh delete --name=kd-v4-32 --zone=us-central2-b
#
# On the workers kdjax initialises jax.distributed from the TPU metadata by itself; every worker reads its own
# slice of the data, process 0 writes logs and the export, all of them write checkpoints into --workdir.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e 's/^# \{0,1\}//' -e '/^set -euo/d'; }
die() { echo "tpu_pod.sh: $*" >&2; exit 2; }

[ $# -gt 0 ] || { usage; exit 2; }
command="$1"; shift
case "$command" in
  create|copy|install|run|logs|stop|delete|up) ;;
  -h|--help|help) usage; exit 0 ;;
  *) die "unknown command '$command' (create, copy, install, run, logs, stop, delete, up)" ;;
esac

name="${TPU_NAME:-}"
zone="${TPU_ZONE:-${ZONE:-}}"
project="${TPU_PROJECT:-${PROJECT:-}}"
accelerator="${TPU_ACCELERATOR_TYPE:-v4-8}"
version="${TPU_VERSION:-tpu-ubuntu2204-base}"
spot="${TPU_SPOT:-0}"
config="${KDJAX_CONFIG:-configs/dkd.py}"
workdir="${KDJAX_WORKDIR:-}"
remote_dir="${KDJAX_REMOTE_DIR:-kdjax}"
log="${KDJAX_LOG:-kdjax_run.log}"
yes=0
dry_run=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --name|--zone|--project|--accelerator-type|--version|--config|--workdir|--remote-dir|--log)
      [ $# -ge 2 ] || die "$1 needs a value"
      set -- "$1=$2" "${@:3}" ;;
  esac
  case "$1" in
    --name=*) name="${1#*=}" ;;
    --zone=*) zone="${1#*=}" ;;
    --project=*) project="${1#*=}" ;;
    --accelerator-type=*) accelerator="${1#*=}" ;;
    --version=*) version="${1#*=}" ;;
    --config=*) config="${1#*=}" ;;
    --workdir=*) workdir="${1#*=}" ;;
    --remote-dir=*) remote_dir="${1#*=}" ;;
    --log=*) log="${1#*=}" ;;
    --spot) spot=1 ;;
    --yes|-y) yes=1 ;;
    --dry-run) dry_run=1 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) die "unknown option $1 (kdjax.main arguments go after --)" ;;
  esac
  shift
done

[ -n "$name" ] || die "--name (or TPU_NAME) is required"
[ -n "$zone" ] || die "--zone (or TPU_ZONE) is required"
repo="$(cd "$(dirname "$0")/.." && pwd)"
jax_version="$(sed -n 's/^jax==//p' "$repo/requirements.txt" | head -n 1)"

gcloud_tpu=(gcloud compute tpus tpu-vm)
where=("--zone=$zone")
if [ -n "$project" ]; then where+=("--project=$project"); fi

run_cmd() {  # run (or, with --dry-run, print) one command
  if [ "$dry_run" = 1 ]; then
    printf '%q ' "$@"; printf '\n'
  else
    "$@"
  fi
}

ssh_all() { run_cmd "${gcloud_tpu[@]}" ssh "$name" "${where[@]}" --worker=all --command="$1"; }
ssh_worker0() { run_cmd "${gcloud_tpu[@]}" ssh "$name" "${where[@]}" --worker=0 --command="$1"; }

do_create() {
  local args=("${gcloud_tpu[@]}" create "$name" "${where[@]}" "--accelerator-type=$accelerator" "--version=$version")
  if [ "$spot" = 1 ]; then args+=(--spot); fi
  run_cmd "${args[@]}"
}

do_copy() {
  local tarball
  tarball="${TMPDIR:-/tmp}/kdjax_code.tar.gz"
  run_cmd tar -czf "$tarball" -C "$repo" --exclude=.git --exclude=__pycache__ --exclude=runs --exclude='*.pyc' .
  run_cmd "${gcloud_tpu[@]}" scp "$tarball" "$name:kdjax_code.tar.gz" "${where[@]}" --worker=all
  ssh_all "mkdir -p $(printf '%q' "$remote_dir") && tar -xzf kdjax_code.tar.gz -C $(printf '%q' "$remote_dir")"
}

do_install() {
  ssh_all "cd $(printf '%q' "$remote_dir") && bash install.sh && python3 -m pip install -q 'jax[tpu]==$jax_version'"
}

do_run() {
  [ -n "$workdir" ] || die "--workdir (or KDJAX_WORKDIR) is required: a directory every worker sees (gcsfuse, NFS)"
  local main=(python3 -m kdjax.main "--config=$config" "--workdir=$workdir" "${extra[@]+"${extra[@]}"}")
  local quoted
  quoted="$(printf '%q ' "${main[@]}")"
  # detached with nohup, so that closing this terminal or the ssh connection does not stop training
  ssh_all "cd $(printf '%q' "$remote_dir") && nohup ${quoted}> \"\$HOME\"/$(printf '%q' "$log") 2>&1 < /dev/null & echo \$! > \"\$HOME\"/kdjax_run.pid"
  do_logs
}

do_logs() {
  ssh_worker0 "tail -n +1 -F \"\$HOME\"/$(printf '%q' "$log")"
}

do_stop() {
  ssh_all "if [ -f \"\$HOME\"/kdjax_run.pid ]; then kill -TERM \"\$(cat \"\$HOME\"/kdjax_run.pid)\" 2>/dev/null || true; fi"
}

do_delete() {
  if [ "$yes" != 1 ] && [ "$dry_run" != 1 ]; then
    read -r -p "Delete TPU $name in $zone? [y/N] " answer
    case "$answer" in y|Y|yes) ;; *) echo "not deleted"; return 0 ;; esac
  fi
  run_cmd "${gcloud_tpu[@]}" delete "$name" "${where[@]}" --quiet
}

case "$command" in
  create) do_create ;;
  copy) do_copy ;;
  install) do_install ;;
  run) do_run ;;
  logs) do_logs ;;
  stop) do_stop ;;
  delete) do_delete ;;
  up) do_create; do_copy; do_install; do_run ;;
esac
