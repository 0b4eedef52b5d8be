"""Bad input of every kind: one clear message naming the config field or file and the fix, no traceback, and the
workdir's finished run untouched (file listing, sizes and mtimes compared before and after).

Config and data cases go through `train.run`; flag and override cases, the device count and `kdjax.infer` through
the real CLIs.
"""

import os
import shutil
import subprocess
import sys

import ml_collections
import pytest

from conftest import REPO, load_config

TINY_CONFIG = '''
"""A few seconds of kdjax on 1024 Fashion-MNIST images; the teacher comes from an init (no pretraining)."""
import importlib.util


def get_config(arg=None):
    spec = importlib.util.spec_from_file_location("dkd", {dkd!r})
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config()
    c.data.train_limit, c.data.test_limit = 1024, 64
    c.train.batch_size, c.train.epochs, c.train.eval_batch_size = 32, 1.5, 64
    c.train.log_every_steps, c.train.checkpoint_every_steps = 1, 8
    c.models.Teacher.init = {teacher!r}
    return c
'''
STEPS_PER_EPOCH, TOTAL, EVERY = 32, 48, 8   # of TINY_CONFIG: 1024 images, batch 32, 1.5 epochs, checkpoint every 8


def write_teacher(path):
    """A randomly initialised convnet_teacher export: a valid `init` without any training."""
    import jax
    import jax.numpy as jnp

    from kdjax.weights.export_dir import make_spec, save_export
    from kdjax.models import get_model

    variables = get_model("convnet_teacher", num_classes=10).init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)),
                                                                  train=False)
    save_export(str(path), {k: variables[k] for k in ("params", "batch_stats")},
                make_spec("convnet_teacher", {}, 10, [28, 28, 1], model_name="Teacher"))
    return str(path)


def listing(root):
    """{relative path: (size, mtime_ns)} of every file and directory under root."""
    out = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st = os.stat(path)
            out[os.path.relpath(path, root)] = (st.st_size if name in files else 0, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
    """A persistent JAX compilation cache shared by the tiny runs of these tests, in this process and in their
    subprocesses (env returned): identical programs are compiled once. Restored afterwards."""
    import jax
    from jax._src import compilation_cache

    path = str(tmp_path_factory.getbasetemp() / "jax_compilation_cache")
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")
    old = {n: getattr(jax.config, n) for n in names}
    for n, v in zip(names, (path, 0.0, -1)):
        jax.config.update(n, v)
    compilation_cache.reset_cache()
    yield {"JAX_COMPILATION_CACHE_DIR": path, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
           "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1", "JAX_PLATFORMS": "cpu"}
    for n, v in old.items():
        jax.config.update(n, v)
    compilation_cache.reset_cache()


class Finished:
    """A finished tiny run (`workdir`), its config file (for the CLI) and the teacher export it used."""

    def __init__(self, root, env):
        self.root, self.env = root, dict(os.environ, **env)
        self.teacher = write_teacher(root / "teacher")
        self.config_file = root / "tiny_dkd.py"
        self.config_file.write_text(TINY_CONFIG.format(dkd=os.path.join(REPO, "configs", "dkd.py"),
                                                       teacher=self.teacher))
        self.workdir = root / "run"

    def config(self, **train):
        c = load_config(str(self.config_file))
        c.train.update(train)
        return c

    def command(self, workdir):
        return [sys.executable, "-m", "kdjax.main", f"--config={self.config_file}", f"--workdir={workdir}"]


_FINISHED = []


def finished_run(tmp_path_factory, env) -> Finished:
    """One uninterrupted tiny run per test session, shared by test_bad_input and test_resume (which never
    change it: they copy it, or check that nothing in it changed)."""
    if not _FINISHED:
        from kdjax import train

        f = Finished(tmp_path_factory.mktemp("finished"), env)
        train.run(f.config(), str(f.workdir))
        _FINISHED.append(f)
    return _FINISHED[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, compile_cache):
    return finished_run(tmp_path_factory, compile_cache)


def _unchanged(finished, before):
    assert listing(finished.workdir) == before
    assert not [p for p in os.listdir(finished.root) if p.startswith("run.old")]


# ---- through train.run -----------------------------------------------------------------------------------------

def _set_loss(c, name, **fields):
    entry = c.losses[name].to_dict()
    entry.update(fields)
    c.losses[name] = ml_collections.ConfigDict(entry)


def _empty_list_dataset(c, tmp):
    (tmp / "train_list.txt").write_text("\n")
    (tmp / "val_list.txt").write_text("a.png 0\n")
    c.data.update(source="list", root=str(tmp), num_classes=10, image_size=28)


def _distance_between_unequal_blocks(c, tmp):
    c.models.Student.capture = ["blocks[1]"]
    c.models.Teacher.capture = ["blocks[1]"]
    c.losses.feat = ml_collections.ConfigDict(dict(type="distance", weight=1.0, key="blocks[1]",
                                                   pairs=[["Student", "Teacher"]], params={}))


def _wrong_arch_init(c, tmp):
    c.models.Teacher.init = str(tmp / "student_export")  # a convnet_student export (the finished run's)


# case: (change the config, substrings the message must contain)
CASES = {
    "unknown_arch": (lambda c, tmp: c.models.Student.update(arch="resnet_nope"),
                     ["config.models.Student.arch", "unknown arch 'resnet_nope'", "convnet_student"]),
    "unknown_loss_type": (lambda c, tmp: _set_loss(c, "dkd", type="dkdd"),
                          ["config.losses.dkd.type", "unknown loss type 'dkdd'"]),
    "pair_names_missing_model": (lambda c, tmp: _set_loss(c, "dkd", pairs=[["Student", "Teachr"]]),
                                 ["config.losses.dkd.pairs", "'Teachr'", "Fix the name or add the model"]),
    "key_not_captured": (lambda c, tmp: _set_loss(c, "dkd", key="blocks[1]"),
                         ["config.losses.dkd.key", "does not capture 'blocks[1]'", "capture"]),
    "capture_not_recorded": (lambda c, tmp: c.models.Student.update(capture=["blocks[9]"]),
                             ["config.models.Student.capture", "no feature 'blocks[9]'", "blocks[0]"]),
    "feature_shapes_cannot_pair": (_distance_between_unequal_blocks,
                                   ["config.losses.feat.key", "differ in shape", "16]", "64]"]),
    "frozen_without_init": (lambda c, tmp: c.models.Teacher.update(init=""),
                            ["config.models.Teacher.init", "frozen but has no init"]),
    "init_missing": (lambda c, tmp: c.models.Teacher.update(init=str(tmp / "no_such_teacher")),
                     ["config.models.Teacher.init", "no_such_teacher", "does not exist"]),
    "init_wrong_arch": (_wrong_arch_init,
                        ["config.models.Teacher.init", "holds a 'convnet_student' model", "'convnet_teacher'"]),
    "workdir_of_other_config": (lambda c, tmp: c.optim.update(lr=0.05),
                                ["config.optim.lr", "holds a run of a different config", "--restart"]),
    "fewer_classes_than_labels": (lambda c, tmp: c.data.update(num_classes=5),
                                  ["config.data.num_classes", "labels up to 9", "num_classes=10"]),
    "model_with_fewer_classes": (lambda c, tmp: c.models.Student.kwargs.update(num_classes=5),
                                 ["config.models.Student.kwargs.num_classes", "outputs 5 classes", "has 10"]),
    "empty_dataset": (_empty_list_dataset, ["train_list.txt", "the split is empty"]),
    "data_dir_missing": (lambda c, tmp: c.data.update(data_dir=str(tmp / "no_data")),
                         ["config.data.data_dir", "no_data", "does not exist"]),
    "batch_larger_than_data": (lambda c, tmp: c.train.update(batch_size=2048),
                               ["config.train.batch_size", "larger than the training data (1024 examples"]),
    "zero_temperature": (lambda c, tmp: c.losses.dkd.params.update(temperature=0.0),
                         ["config.losses.dkd.params.temperature", "> 0", "0.0"]),
    "negative_temperature": (lambda c, tmp: c.losses.dkd.params.update(temperature=-2.0),
                             ["config.losses.dkd.params.temperature", "-2.0"]),
    "weight_not_a_number": (lambda c, tmp: _set_loss(c, "dkd", weight="heavy"),
                            ["config.losses.dkd.weight", "number", "'heavy'"]),
    "weight_as_string_number": (lambda c, tmp: _set_loss(c, "gt_ce", weight="1.0"),
                                ["config.losses.gt_ce.weight", "number", "'1.0'"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_is_one_clear_error_and_touches_nothing(finished, case, tmp_path):
    from kdjax import train
    from kdjax.errors import KdjaxError

    change, expected = CASES[case]
    shutil.copytree(finished.workdir / "export", tmp_path / "student_export")
    cfg = finished.config()
    with cfg.unlocked():
        change(cfg, tmp_path)
    before = listing(finished.workdir)
    with pytest.raises(KdjaxError) as info:
        train.run(cfg, str(finished.workdir))
    message = str(info.value)
    for part in expected:
        assert part in message, message
    assert "\n" not in message and "Traceback" not in message, message
    _unchanged(finished, before)


def test_restart_with_bad_input_moves_nothing(finished):
    from kdjax import train
    from kdjax.errors import ConfigError

    cfg = finished.config()
    cfg.models.Student.arch = "resnet_nope"
    before = listing(finished.workdir)
    with pytest.raises(ConfigError, match="config.models.Student.arch"):
        train.run(cfg, str(finished.workdir), restart=True)  # --restart acts only once every check has passed
    _unchanged(finished, before)


def test_workdir_whose_first_attempt_failed_is_reused(finished, tmp_path):
    from kdjax.config.identity import identity
    from kdjax.runtime.workdir import check_workdir

    other = finished.config()
    other.optim.lr = 0.05
    check_workdir(str(tmp_path), identity(other))  # an attempt that then failed before training: config.json only
    check_workdir(str(tmp_path), identity(finished.config()))  # the fixed config is accepted: nothing was trained there
    assert os.listdir(tmp_path) == ["config.json"]


def test_restart_moves_the_old_run_aside_and_loses_nothing(finished, tmp_path):
    from kdjax.runtime.workdir import move_aside

    copy = tmp_path / "run"
    shutil.copytree(finished.workdir, copy)
    files = {k: v[0] for k, v in listing(copy).items()}
    target = move_aside(str(copy))
    assert not copy.exists() and {k: v[0] for k, v in listing(target).items()} == files
    shutil.copytree(finished.workdir, copy)
    assert move_aside(str(copy)) != target  # a second restart in the same second gets its own name


# ---- through the CLIs ------------------------------------------------------------------------------------------

def _cli(module, args, env=None, timeout=240):
    env = dict(os.environ, JAX_PLATFORMS="cpu", **(env or {}))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env)


def _one_clear_line(out, prefix, expected):
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr and "jax._src" not in out.stderr, out.stderr[-3000:]
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith(prefix)]
    assert len(lines) == 1, out.stderr[-3000:]
    for part in expected:
        assert part in lines[0], lines[0]


@pytest.mark.parametrize("args, env, expected", [
    (["--config.train.nonexistent=1"], None, ["config.train.nonexistent: no such config field", "batch_size"]),
    (["--config.trian.epochs=1"], None, ["config.trian.epochs", "did you mean config.train"]),
    (["--config.losses.dkd.weight=heavy"], None, ["config.losses.dkd.weight", "'heavy'", "float"]),
    (["--config.train.batch_size=33"], {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
     ["config.train.batch_size", "33 is not divisible by the 2 devices"]),
], ids=["unknown_field", "unknown_section", "weight_not_a_number", "batch_not_divisible_by_devices"])
def test_cli_flag_errors_are_one_line(finished, args, env, expected):
    before = listing(finished.workdir)
    out = _cli("kdjax.main", [f"--config={finished.config_file}", f"--workdir={finished.workdir}", *args], env)
    _one_clear_line(out, "kdjax: error:", expected)
    _unchanged(finished, before)


def test_infer_without_spec_and_with_undecodable_image(finished, tmp_path):
    not_export = tmp_path / "not_an_export"
    not_export.mkdir()
    image = tmp_path / "broken.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    out = _cli("kdjax.infer", [f"--export_dir={not_export}", str(image)])
    _one_clear_line(out, "kdjax.infer: error:", [str(not_export), "no spec.json", "export"])
    out = _cli("kdjax.infer", [f"--export_dir={finished.workdir / 'export'}", str(image)])
    _one_clear_line(out, "kdjax.infer: error:", [str(image), "cannot decode"])
