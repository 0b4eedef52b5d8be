"""`pip install .` into a fresh virtualenv, then the console scripts from another directory: `kdjax-train --help` and
a tiny training run of configs/dkd.py (taken from the installed package); and install.sh's two routes, into a venv and
on an externally managed Python (PEP 668), whose venv `python -m kdjax...` re-runs itself in.

The venvs see this machine's site-packages (--system-site-packages), so jax & co. are not downloaded again, and pip
builds without an isolated build environment (--no-build-isolation): nothing is fetched."""

import json
import os
import shutil
import subprocess
import sys
import time

from conftest import REPO


def _copy_repo(target):
    """The working tree without what runs and builds leave at its top (.venv, runs, build, ...)."""
    top = {".git", ".venv", "runs", "build", ".pytest_cache"}

    def ignore(directory, names):
        skip = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
        if os.path.abspath(directory) == os.path.abspath(REPO):
            skip |= {n for n in names if n in top or n.startswith("workdir")}
        return skip

    shutil.copytree(REPO, target, ignore=ignore)
    return str(target)


def _venv(path):
    """A venv seeing this machine's packages, pip and setuptools included (its own bundled ones would shadow them)."""
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(path)], check=True,
                   timeout=300)
    return os.path.join(str(path), "bin")


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def test_pip_install_then_console_scripts_from_anywhere(tmp_path):
    bin_dir = _venv(tmp_path / "venv")
    source = _copy_repo(tmp_path / "src")
    t0 = time.perf_counter()
    subprocess.run([os.path.join(bin_dir, "python"), "-m", "pip", "install", "-q", "--no-build-isolation", source],
                   check=True, timeout=900, env=_env())
    seconds = time.perf_counter() - t0
    print(f"pip install . took {seconds:.1f} s")
    shutil.rmtree(source)  # the installed package must not need the source tree
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([os.path.join(bin_dir, "python"), "-c", "import kdjax, kdjax_configs; "
                            "print(kdjax.__file__); print(list(kdjax_configs.__path__)[0])"],
                           cwd=elsewhere, capture_output=True, text=True, check=True, env=_env())
    assert all(line.startswith(str(tmp_path / "venv")) for line in where.stdout.split()), where.stdout
    helped = subprocess.run([os.path.join(bin_dir, "kdjax-train"), "--help"], cwd=elsewhere, capture_output=True,
                            text=True, timeout=300, env=_env())
    assert helped.returncode == 0 and "--config" in helped.stdout and "--paddleclas_override" in helped.stdout
    for script in ("kdjax-infer", "kdjax-export", "kdjax-paddleclas"):
        assert subprocess.run([os.path.join(bin_dir, script), "--help"], cwd=elsewhere, capture_output=True,
                              timeout=300, env=_env()).returncode == 0, script
    run = subprocess.run(
        [os.path.join(bin_dir, "kdjax-train"), "--config=configs/dkd.py", "--workdir=wd",
         "--config.data.train_limit=256", "--config.data.test_limit=200", "--config.train.batch_size=64",
         "--config.pretrain.batch_size=64", "--config.train.epochs=1", "--config.pretrain.epochs=1",
         "--config.train.eval_batch_size=200"],
        cwd=elsewhere, capture_output=True, text=True, timeout=1200, env=_env())
    assert run.returncode == 0, run.stderr[-3000:]
    with open(elsewhere / "wd" / "summary.json") as f:
        summary = json.load(f)
    assert summary["eval"]["count"] == 200 and 0 <= summary["eval"]["Student/top1"] <= 1
    assert os.path.isfile(elsewhere / "wd" / "export" / "spec.json")


def test_install_sh_into_a_venv_and_on_an_externally_managed_python(tmp_path):
    repo = _copy_repo(tmp_path / "repo")
    # 1. inside a virtualenv: installs there (editable)
    bin_dir = _venv(tmp_path / "venv")
    env = _env(KDJAX_PYTHON=os.path.join(bin_dir, "python"), KDJAX_PIP_ARGS="--no-build-isolation")
    subprocess.run(["bash", "install.sh"], cwd=repo, check=True, timeout=900, env=env)
    assert subprocess.run([os.path.join(bin_dir, "kdjax-train"), "--help"], capture_output=True, timeout=300,
                          env=_env()).returncode == 0
    assert not os.path.exists(os.path.join(repo, ".venv"))  # a venv is used as it is
    # 2. PEP 668: a venv beside install.sh (made here first, as above, so pip needs no download), said so; a Python
    #    without kdjax's packages re-runs `-m kdjax...` there
    _venv(os.path.join(repo, ".venv"))
    out = subprocess.run(["bash", "install.sh"], cwd=repo, capture_output=True, text=True, timeout=900,
                         env=_env(KDJAX_EXTERNALLY_MANAGED="1", KDJAX_PIP_ARGS="--no-build-isolation"))
    assert out.returncode == 0, out.stderr
    assert f"in the virtualenv {repo}/.venv" in out.stdout
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", str(bare)], check=True, timeout=300)  # no jax there
    helped = subprocess.run([str(bare / "bin" / "python"), "-m", "kdjax.main", "--help"], cwd=repo,
                            capture_output=True, text=True, timeout=300, env=_env())
    assert helped.returncode == 0, helped.stderr
    assert "usage: python -m kdjax.main" in helped.stdout
    assert f"running the command with {repo}/.venv/bin/python" in helped.stderr
