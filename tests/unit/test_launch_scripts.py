"""launch/: the TPU pod, Slurm and local multi-process launchers parse (`bash -n`), pass shellcheck when it is
installed, and print the commands they would run (`--dry-run` / KDJAX_DRY_RUN=1). The local launcher's real run
is exercised by tests/test_scale.py (two processes over loopback)."""

import os
import shutil
import subprocess

import pytest

from conftest import REPO

LAUNCH = os.path.join(REPO, "launch")
SCRIPTS = ["tpu_pod.sh", "gpu_slurm.sbatch", "local_multiprocess.sh"]


def _run(args, env=None, check=True):
    full_env = dict(os.environ)
    for var in [v for v in full_env if v.startswith(("SLURM_", "TPU_", "KDJAX_"))]:
        del full_env[var]
    full_env.update(env or {})
    out = subprocess.run(["bash"] + args, capture_output=True, text=True, env=full_env, cwd=REPO, timeout=60)
    if check:
        assert out.returncode == 0, out.stderr
    return out


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_parse(script):
    out = subprocess.run(["bash", "-n", os.path.join(LAUNCH, script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (apt-get install shellcheck)")
@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_are_shellcheck_clean(script):
    out = subprocess.run(["shellcheck", "--shell=bash", os.path.join(LAUNCH, script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_tpu_pod_up_dry_run_prints_create_copy_install_run_and_logs():
    out = _run([os.path.join(LAUNCH, "tpu_pod.sh"), "up", "--dry-run", "--name=kd-pod", "--zone=us-central2-b",
                "--project=my-proj", "--accelerator-type=v4-32", "--spot", "--config=configs/dkd.py:imagenet",
                "--workdir=/mnt/shared/runs/dkd", "--", "--config.train.batch_size=1024"]).stdout.splitlines()
    create, tar, scp, untar, install, run, logs = out
    assert create.startswith("gcloud compute tpus tpu-vm create kd-pod ")
    for part in ("--zone=us-central2-b", "--project=my-proj", "--accelerator-type=v4-32", "--version=", "--spot"):
        assert part in create
    assert tar.startswith("tar -czf") and "--exclude=.git" in tar
    assert scp.startswith("gcloud compute tpus tpu-vm scp") and "--worker=all" in scp
    assert "--worker=all" in untar and "tar" in untar
    assert "--worker=all" in install and "install.sh" in install and "jax\\[tpu\\]==" in install
    assert "--worker=all" in run
    for part in ("python3", "kdjax.main", "--config=configs/dkd.py:imagenet", "--workdir=/mnt/shared/runs/dkd",
                 "--config.train.batch_size=1024", "nohup"):
        assert part in run, (part, run)
    assert "--worker=0" in logs and "tail" in logs


def test_tpu_pod_takes_parameters_from_the_environment_and_deletes_on_request():
    env = {"TPU_NAME": "env-pod", "TPU_ZONE": "europe-west4-a"}
    out = _run([os.path.join(LAUNCH, "tpu_pod.sh"), "delete", "--dry-run"], env=env).stdout.strip()
    assert out == "gcloud compute tpus tpu-vm delete env-pod --zone=europe-west4-a --quiet"
    stop = _run([os.path.join(LAUNCH, "tpu_pod.sh"), "stop", "--dry-run"], env=env).stdout
    assert "--worker=all" in stop and "kill" in stop and "TERM" in stop


@pytest.mark.parametrize("args,message", [
    (["run", "--zone=z", "--dry-run"], "--name"),
    (["run", "--name=n", "--zone=z", "--dry-run"], "--workdir"),
    (["frobnicate"], "unknown command"),
    (["create", "--name=n", "--zone=z", "--bogus"], "unknown option"),
])
def test_tpu_pod_refuses_incomplete_commands(args, message):
    out = _run([os.path.join(LAUNCH, "tpu_pod.sh")] + args, check=False)
    assert out.returncode == 2 and message in out.stderr


def test_local_multiprocess_dry_run_starts_one_process_per_id():
    out = _run([os.path.join(LAUNCH, "local_multiprocess.sh"), "-n", "3", "--port", "23456", "--cpu-devices", "4",
                "--dry-run", "--", "--config=configs/dkd.py", "--workdir=runs/mp"]).stdout.splitlines()
    assert len(out) == 3
    for line, pid in zip(out, (1, 2, 0)):
        assert f"--process_id={pid}" in line
        for part in ("-m kdjax.main", "--config=configs/dkd.py", "--workdir=runs/mp",
                     "--coordinator_address=127.0.0.1:23456", "--num_processes=3",
                     "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS=cpu"):
            assert part in line, (part, line)
    assert out[0].endswith("&") and "process_1.log" in out[0]
    assert not out[2].endswith("&")  # process 0 runs in the foreground of the launcher


def test_local_multiprocess_rejects_bad_counts():
    out = _run([os.path.join(LAUNCH, "local_multiprocess.sh"), "-n", "zero", "--dry-run"], check=False)
    assert out.returncode == 2 and "--num-processes" in out.stderr


def _slurm_env(ntasks, nodes, nodelist="gpu[007-008]"):
    return {"KDJAX_DRY_RUN": "1", "SLURM_JOB_ID": "4242", "SLURM_NTASKS": str(ntasks),
            "SLURM_JOB_NUM_NODES": str(nodes), "SLURM_JOB_NODELIST": nodelist, "SLURM_SUBMIT_DIR": REPO,
            "PATH": "/usr/bin:/bin"}  # no scontrol: the script parses the node list itself


def test_slurm_one_process_per_gpu():
    out = _run([os.path.join(LAUNCH, "gpu_slurm.sbatch"), "--config.train.batch_size=512"],
               env=dict(_slurm_env(16, 2), KDJAX_CONFIG="configs/dkd.py:imagenet", KDJAX_WORKDIR="/shared/r"))
    srun, per_task = out.stdout.strip().splitlines()
    assert srun.startswith("srun --kill-on-bad-exit=1 ")
    assert per_task == ("per task: python3 -m kdjax.main --config=configs/dkd.py:imagenet --workdir=/shared/r "
                        "--config.train.batch_size=512 --coordinator_address=gpu007:24242 --num_processes=16 "
                        "--process_id=$SLURM_PROCID --local_device_ids=$SLURM_LOCALID")
    assert "16 processes on 2 nodes (one per GPU)" in out.stderr


def test_slurm_one_process_per_node_sees_all_its_gpus():
    out = _run([os.path.join(LAUNCH, "gpu_slurm.sbatch")], env=dict(_slurm_env(2, 2, "nodeA,nodeB"), KDJAX_PORT="9999"))
    per_task = out.stdout.strip().splitlines()[-1]
    assert "--coordinator_address=nodeA:9999 --num_processes=2 --process_id=$SLURM_PROCID" in per_task
    assert "--local_device_ids" not in per_task


def test_slurm_script_declares_its_resources():
    with open(os.path.join(LAUNCH, "gpu_slurm.sbatch")) as f:
        text = f.read()
    for directive in ("--nodes=", "--ntasks-per-node=", "--gpus-per-node=", "--signal=TERM@"):
        assert f"#SBATCH {directive}" in text
