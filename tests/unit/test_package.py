"""kdjax as a package: pyproject.toml lists every package and console script, configs resolve from the installed copy
when they are not in the current directory, and the PEP 668 re-run of install.sh's venv decides correctly."""

import os
import sys
import tomllib

from conftest import REPO


def _pyproject():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_every_kdjax_package_is_listed():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = {os.path.relpath(root, REPO).replace(os.sep, ".") for root, _, files in os.walk(os.path.join(REPO, "kdjax"))
             if "__init__.py" in files}
    assert found <= listed, sorted(found - listed)
    assert "kdjax_configs" in listed and _pyproject()["tool"]["setuptools"]["package-dir"]["kdjax_configs"] == "configs"


def test_console_scripts_point_at_existing_functions():
    import importlib

    scripts = _pyproject()["project"]["scripts"]
    assert {"kdjax-train", "kdjax-infer", "kdjax-export"} <= set(scripts)
    for name, target in scripts.items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), name


def test_dependencies_are_requirements_txt_and_tensorboard_is_an_extra():
    p = _pyproject()
    assert p["tool"]["setuptools"]["dynamic"]["dependencies"] == {"file": ["requirements.txt"]}
    assert any(r.startswith("tensorboard") for r in p["project"]["optional-dependencies"]["tensorboard"])
    with open(os.path.join(REPO, "requirements.txt")) as f:
        assert any(line.startswith("pyyaml") for line in f)  # the PaddleClas YAML route reads YAML


def test_config_paths_fall_back_to_the_installed_copy(tmp_path, monkeypatch):
    from kdjax.cli import config_path

    installed = tmp_path / "site" / "kdjax_configs"
    installed.mkdir(parents=True)
    (installed / "dkd.py").write_text("")
    monkeypatch.setattr(config_path, "installed_configs_dir", lambda: str(installed))
    monkeypatch.chdir(tmp_path)  # no configs/ here
    assert config_path.resolve("configs/dkd.py:imagenet") == f"{installed}/dkd.py:imagenet"
    assert config_path.resolve("configs/nope.py") == "configs/nope.py"  # not installed either: left for the error
    assert config_path.resolve("other/dkd.py") == "other/dkd.py"
    assert config_path.resolve_argv(["prog", "--config", "configs/dkd.py", "--workdir=w"]) == \
        ["prog", "--config", f"{installed}/dkd.py", "--workdir=w"]
    os.makedirs(tmp_path / "configs")
    (tmp_path / "configs" / "dkd.py").write_text("")
    assert config_path.resolve("configs/dkd.py") == "configs/dkd.py"  # a path that exists wins


def test_reexec_only_without_jax_and_with_the_venv(tmp_path, monkeypatch):
    import importlib.util

    import kdjax as _venv

    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    monkeypatch.setenv("KDJAX_VENV", str(venv))
    monkeypatch.delenv("KDJAX_NO_REEXEC", raising=False)
    assert _venv._venv_python() is None  # this Python has jax
    real = importlib.util.find_spec
    monkeypatch.setattr(_venv.importlib.util, "find_spec", lambda name: None if name == "jax" else real(name))
    assert _venv._venv_python() == str(venv / "bin" / "python")
    monkeypatch.setenv("KDJAX_NO_REEXEC", "1")
    assert _venv._venv_python() is None
    monkeypatch.delenv("KDJAX_NO_REEXEC")
    monkeypatch.setattr(sys, "orig_argv", ["python", "-m", "kdjax.main", "--help"])
    assert _venv._started_as() == "kdjax.main"
    monkeypatch.setattr(sys, "orig_argv", ["python", "script.py"])
    assert _venv._started_as() == ""


def test_install_sh_parses_and_is_shellcheck_clean():
    import shutil
    import subprocess

    assert subprocess.run(["bash", "-n", os.path.join(REPO, "install.sh")]).returncode == 0
    if shutil.which("shellcheck"):
        out = subprocess.run(["shellcheck", "--shell=bash", os.path.join(REPO, "install.sh")], capture_output=True,
                             text=True)
        assert out.returncode == 0, out.stdout
