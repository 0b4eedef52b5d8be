"""Shared test fixtures: repo paths and a tiny, real-data version of the default config.

tests/unit/ holds tests of one piece at a time (losses against golden files and papers, models, data, kernels, weight
import); tests/e2e/ runs the real training loop or CLI. Every e2e test is marked `slow` (as are the few slow unit
tests), so `python -m pytest -q -m "not slow" tests` is the quick loop; the README's command runs everything."""

import os
import shutil
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
if REPO not in sys.path:
    sys.path.insert(0, REPO)
# Models trained first (init='train') go to a cache (kdjax/weights/model_cache.py): tests use a fresh one per session,
# shared by the runs of the session (and their subprocesses), never the user's ~/.cache/kdjax
TEST_CACHE = tempfile.mkdtemp(prefix="kdjax-test-cache-")
os.environ["KDJAX_CACHE"] = TEST_CACHE
# Tests compile without LLVM's optimisation passes (XLA:CPU --xla_backend_optimization_level=0, inherited by every
# subprocess): the suite's runs are a few steps long, so compiling dominates them (a 16-step default job: 25.4 -> 15.5 s,
# same accuracy); the HLO passes, buffer assignment, collectives and sharding are XLA's usual ones, and results agree
# to float rounding (the golden, paper and weight-import tests pass at either level). KDJAX_TEST_XLA_OPT=default
# runs the suite at XLA's default level, as users' runs are.
if os.environ.get("KDJAX_TEST_XLA_OPT", "0") != "default" and "xla_backend_optimization_level" not in \
        os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
# kdjax's XLA:CPU flags, as `python -m kdjax.main` applies them, before anything starts JAX: runs made in this
# process then compute exactly what the CLI subprocesses compute (the flags change convolution rounding)
import kdjax.runtime.xla_flags  # noqa: E402,F401


def load_config(path: str, arg: str = None):
    """What `--config=path[:arg]` gives, without absl flags."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], os.path.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def tiny(config, *, train_limit=1024, test_limit=500, batch=64, epochs=2.0, pretrain_epochs=2.0):
    """Shrink a config to a few seconds of real training on the first images of its dataset."""
    with config.unlocked():
        config.data.train_limit = train_limit
        config.data.test_limit = test_limit
        config.train.batch_size = batch
        config.train.epochs = epochs
        config.train.log_every_steps = 5
        config.train.checkpoint_every_steps = 5
        config.train.eval_batch_size = 250
        config.pretrain.batch_size = batch
        config.pretrain.epochs = pretrain_epochs
    return config


def resnet_student_loss(kernels: str, x):
    """(loss, params) of a resnet8x4 student inside DistillationModel with `kernels`, in training mode: loss(params)
    = (sum of logits · class index, (outputs, updated batch statistics)), for comparing kernel sets."""
    import jax
    import jax.numpy as jnp
    import ml_collections

    from kdjax.models.distillation import DistillationModel, build_submodels

    cfg = ml_collections.ConfigDict({"Student": {"arch": "resnet8x4", "frozen": False, "init": "", "capture": ()}})
    model = DistillationModel(build_submodels(cfg, 10), kernels=kernels)
    variables = model.init_variables(jax.random.PRNGKey(0), x)
    params, stats = {"Student": variables["Student"]["params"]}, {"Student": variables["Student"]["batch_stats"]}

    def loss(p):
        out, new_stats = model.apply(p, stats, {}, x, train=True, rng=jax.random.PRNGKey(1))
        return jnp.sum(out["Student"]["logits"] * jnp.arange(10.0)), (out, new_stats)

    return loss, params


@pytest.fixture(scope="session")
def repo_root():
    return REPO


@pytest.fixture(scope="session")
def shared_dir():
    return SHARED


def pytest_configure(config):
    _rerun_in_install_venv(config)
    config.addinivalue_line("markers", "slow: runs the real training loop, a CLI or a long computation (deselect with "
                                       "-m 'not slow')")


def _rerun_in_install_venv(config):
    """After install.sh made .venv on a PEP 668 system: `python -m pytest` with a Python lacking kdjax's packages
    re-runs itself there (kdjax/__init__.py), with pytest's output capture stopped first so the re-run prints."""
    from kdjax import _reexec, _started_as, _venv_python

    python = _venv_python() if _started_as() == "pytest" else None
    if python:
        config.pluginmanager.getplugin("capturemanager").stop_global_capturing()
        _reexec(python)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """The whole suite (`python -m pytest -q tests`) runs on 2 worker processes when pytest-xdist is installed (it is
    in requirements.txt) and the machine has 2 cores: most tests are compile-bound, and XLA compiles on one core.
    Files stay whole (`--dist loadfile`: a module's fixtures are built once). KDJAX_TEST_WORKERS=N chooses (1: one
    process); `-n` on the command line wins; a run of some files or tests stays in one process."""
    if hasattr(config, "workerinput") or config.pluginmanager.getplugin("xdist") is None:
        return None
    if getattr(config.option, "numprocesses", None) or config.option.collectonly:
        return None
    whole_suite = [os.path.realpath(a) for a in config.args] == [os.path.join(REPO, "tests")]
    workers = int(os.environ.get("KDJAX_TEST_WORKERS", "0") or 0) or (min(2, os.cpu_count() or 1) if whole_suite else 1)
    if workers > 1:
        config.option.numprocesses = workers
        config.option.dist = "loadfile"
    return None


def pytest_unconfigure(config):
    shutil.rmtree(TEST_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    e2e = os.path.join(REPO, "tests", "e2e") + os.sep
    for item in items:
        if str(item.fspath).startswith(e2e):
            item.add_marker(pytest.mark.slow)
