"""Faults of every kind through the real CLI (issue 17): one writer per workdir, atomic exports, a finished run left
alone, a resume that notices another teacher or other data, input files checked before training, damaged workdir
files, kdjax.infer's flags and huge images, SIGTERM ending any mode promptly with exit code 0. Each checks the exit
code, the one-line message (no traceback) and that no checkpoint or export was lost and no partial file was left.
OS-level failures (disk full, read-only, permission, a busy mount) are in test_faults_os.py.

The finished tiny run of test_bad_input is shared (copied, never changed); CLI processes share its compilation cache.
"""

import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
import types
import zlib

import numpy as np
import pytest

from conftest import REPO
from test_bad_input import TOTAL, compile_cache, finished_run, listing  # noqa: F401 (compile_cache: a fixture)

ERROR = "kdjax: error:"


@pytest.fixture(scope="module")
def finished(tmp_path_factory, compile_cache):
    return finished_run(tmp_path_factory, compile_cache)


# ---- helpers ---------------------------------------------------------------------------------------------------

def kdjax(finished, workdir, *args, module="kdjax.main", timeout=400, prefix=()):
    """`python -m kdjax.main --config=<tiny> --workdir=W ARGS` (or another module with ARGS only)."""
    argv = [f"--config={finished.config_file}", f"--workdir={workdir}"] if module == "kdjax.main" else []
    return subprocess.run([*prefix, sys.executable, "-m", module, *argv, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env=finished.env)


def one_line(out, *expected, prefix=ERROR):
    """Exit code 2, no traceback, exactly one error line holding every `expected` text; returns the line."""
    assert out.returncode == 2, (out.returncode, out.stderr[-3000:])
    assert "Traceback" not in out.stderr and "jax._src" not in out.stderr, out.stderr[-3000:]
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith(prefix)]
    assert len(lines) == 1, out.stderr[-3000:]
    for part in expected:
        assert part in lines[0], lines[0]
    return lines[0]


def copy_run(finished, dest, *, unfinished=False):
    """A copy of the finished run; `unfinished`: without summary.json, so a rerun resumes (at the last step)."""
    shutil.copytree(finished.workdir, dest)
    if unfinished:
        os.remove(os.path.join(dest, "summary.json"))
    return dest


def leftovers(root):
    """Partial files a failed or killed write could leave: temporaries, empty files, Orbax tmp directories."""
    found = []
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            if ".tmp" in name or "orbax-checkpoint-tmp" in name or name.endswith(".old"):
                found.append(path)
            elif name in files and os.path.getsize(path) == 0 and name != "LOCK":
                found.append(path)
    return found


def same_export(a, b):
    from kdjax.weights.export_dir import load_export

    va, sa = load_export(str(a))
    vb, sb = load_export(str(b))
    la, lb = _leaves(va), _leaves(vb)
    return sa == sb and len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))


def _leaves(tree):
    import jax

    return jax.tree.leaves(tree)


def with_teacher(finished, tmp_path, teacher):
    """The tiny config with its teacher init at `teacher` (a config file and env for `kdjax`)."""
    config = tmp_path / "tiny_teacher.py"
    config.write_text(finished.config_file.read_text().replace(repr(finished.teacher), repr(str(teacher))))
    return types.SimpleNamespace(config_file=config, env=finished.env)


# ---- one writer per workdir ------------------------------------------------------------------------------------

def test_a_second_run_on_a_busy_workdir_is_refused(finished, tmp_path):
    """The finding: two runs 2 s apart on one workdir (tracebacks, steps logged twice). The second is refused in
    one line naming the first; the first goes on undisturbed (here stopped by SIGTERM: exit 0, checkpointed)."""
    wd = tmp_path / "run"
    longer = "--config.train.epochs=20"  # still running when the second arrives
    first = subprocess.Popen([sys.executable, "-m", "kdjax.main", f"--config={finished.config_file}",
                              f"--workdir={wd}", longer], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=finished.env)
    deadline = time.time() + 300
    while not (wd / "config.json").exists():  # written once the lock is held
        assert first.poll() is None and time.time() < deadline, first.communicate()[1][-3000:]
        time.sleep(0.1)
    second = kdjax(finished, wd, longer)
    one_line(second, f"--workdir={wd} is in use by PID {first.pid} on host", "one run writes a workdir at a time")
    assert first.poll() is None  # undisturbed
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    steps = [json.loads(ln)["step"] for ln in (wd / "metrics.jsonl").read_text().splitlines()
             if '"kind": "train"' in ln]
    assert steps == sorted(set(steps)), steps  # one writer: no step logged twice
    assert not leftovers(wd), leftovers(wd)


def test_held_lock_names_its_holder_and_a_dead_holders_lock_is_taken_over(finished, tmp_path):
    from kdjax.errors import CheckpointError
    from kdjax.runtime import lock as lock_lib

    wd = copy_run(finished, tmp_path / "run", unfinished=True)
    before = listing(wd)
    with lock_lib.WorkdirLock(str(wd)):
        out = kdjax(finished, wd)
        one_line(out, f"--workdir={wd} is in use by PID {os.getpid()} on host", "one run writes a workdir at a time")
        evaluated = kdjax(finished, wd, "--mode=eval")  # reading needs no lock: evaluate while a run trains
        assert evaluated.returncode == 0 and f"checkpoint step {TOTAL}" in evaluated.stdout, evaluated.stderr[-2000:]
        after = listing(wd)
        after.pop(".lock"), before.pop(".lock", None)  # (its holder's heartbeat touches it)
        assert after == before
    # a lock file left by a process that died (flock released by the kernel) is simply taken over
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (wd / ".lock").write_text(json.dumps({"host": os.uname().nodename, "pid": int(dead.stdout), "started": 1.0}))
    with lock_lib.WorkdirLock(str(wd)) as taken:
        assert json.loads((wd / ".lock").read_text())["pid"] == os.getpid() and taken.held
    # another host's lock is trusted while its heartbeat is fresh (flock over NFS may be local only), not after
    (wd / ".lock").write_text(json.dumps({"host": "gpu-node-7", "pid": 4242, "started": time.time()}))
    with pytest.raises(CheckpointError, match=r"PID 4242 on host gpu-node-7 .*delete .*\.lock"):
        lock_lib.WorkdirLock(str(wd)).acquire()
    stale = time.time() - lock_lib.STALE_S - 60
    os.utime(wd / ".lock", (stale, stale))
    with lock_lib.WorkdirLock(str(wd)):
        assert json.loads((wd / ".lock").read_text())["host"] == os.uname().nodename


# ---- a finished run, atomic exports ----------------------------------------------------------------------------

def test_finished_run_run_again_changes_nothing_even_when_killed(finished, tmp_path):
    wd = copy_run(finished, tmp_path / "run")
    before = listing(wd)
    out = kdjax(finished, wd)
    assert out.returncode == 0 and "already finished" in out.stdout and "Traceback" not in out.stderr, out.stderr
    assert "Student" in out.stdout and "top-1" in out.stdout  # the summary is shown
    assert listing(wd) == before  # not a byte, not an mtime
    rng = random.Random()
    for _ in range(3):  # SIGKILL at random moments of the no-op rerun
        p = subprocess.Popen([sys.executable, "-m", "kdjax.main", f"--config={finished.config_file}",
                              f"--workdir={wd}"], cwd=REPO, env=finished.env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 6.0))
        p.kill()
        p.wait()
        assert listing(wd) == before
    assert same_export(wd / "export", finished.workdir / "export")


EXPORT_LOOP = r'''
import sys
import numpy as np
from kdjax.weights.export_dir import make_spec, save_export
i = 0
while True:
    i += 1
    save_export(sys.argv[1], {"params": {"w": np.full((64, 1024), i, np.float32)}},
                make_spec("convnet_student", {}, 10, [28, 28, 1], model_name=str(i)))
    print(i, flush=True)
'''


def test_export_replacement_survives_sigkill_at_any_moment(finished, tmp_path):
    """An export is replaced only once the new one is complete: SIGKILL anywhere leaves a loadable export whose
    spec and variables belong together, and the next save cleans up after the killed one."""
    from kdjax.weights.export_dir import is_export_dir, load_export, make_spec, save_export

    target = tmp_path / "export"
    rng = random.Random()
    for _ in range(4):
        p = subprocess.Popen([sys.executable, "-c", EXPORT_LOOP, str(target)], cwd=REPO, env=finished.env,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        first = p.stdout.readline()  # one complete export exists
        assert first.strip().isdigit()
        time.sleep(rng.uniform(0.0, 1.5))
        p.kill()
        p.wait()
        assert is_export_dir(str(target))
        variables, spec = load_export(str(target))
        assert float(variables["params"]["w"][0, 0]) == float(spec["model_name"])
    save_export(str(target), {"params": {"w": np.zeros((2, 2), np.float32)}},
                make_spec("convnet_student", {}, 10, [28, 28, 1], model_name="0"))
    assert sorted(os.listdir(tmp_path)) == ["export"]  # no export.tmp-PID / export.old left


# ---- a run knows what it was built from --------------------------------------------------------------------------

def _other_teacher(path):
    import jax
    import jax.numpy as jnp

    from kdjax.models import get_model
    from kdjax.weights.export_dir import make_spec, save_export

    v = get_model("convnet_teacher", num_classes=10).init(jax.random.PRNGKey(7), jnp.zeros((1, 28, 28, 1)),
                                                          train=False)
    save_export(str(path), {k: v[k] for k in ("params", "batch_stats")},
                make_spec("convnet_teacher", {}, 10, [28, 28, 1], model_name="Teacher"))


def test_resume_refuses_another_teacher_or_data_selection(finished, tmp_path):
    """The finding: the export at the teacher's `init` path replaced mid-run, and data.train_limit changed, both
    resumed silently. The identity now holds the content of every init and of the data selection."""
    from kdjax.config.check import check
    from kdjax.config.identity import identity
    from kdjax.runtime.workdir import record_identity

    wd = copy_run(finished, tmp_path / "run", unfinished=True)
    teacher = tmp_path / "teacher"
    shutil.copytree(finished.teacher, teacher)
    moved = with_teacher(finished, tmp_path, teacher)
    config = finished.config()
    with config.unlocked():
        config.models.Teacher.init = str(teacher)
    record_identity(str(wd), identity(config, check(config)))  # as if the run had started with the teacher here
    shutil.rmtree(teacher)
    _other_teacher(teacher)  # replaced mid-run by another teacher of the same arch
    before = listing(wd)
    one_line(kdjax(moved, wd), "config.models.Teacher.init", "holds other weights than when this run started",
             "--restart", "new --workdir")
    one_line(kdjax(moved, wd, "--config.data.train_limit=512"), "config.data.train_limit", "1024 there, 512 now",
             "--restart")
    assert listing(wd) == before


def test_same_teacher_moved_elsewhere_is_the_same_run(finished, tmp_path):
    from kdjax.config.identity import identity
    from kdjax.runtime.workdir import compare_workdir
    from kdjax.config.check import check

    teacher = tmp_path / "teacher"
    shutil.copytree(finished.teacher, teacher)
    config = finished.config()
    with config.unlocked():
        config.models.Teacher.init = str(teacher)
    assert compare_workdir(str(finished.workdir), identity(config, check(config))) == "same"


def _png(path, value, size=28):
    from PIL import Image

    Image.fromarray(np.full((size, size), value, np.uint8)).save(path)


@pytest.fixture()
def list_data(tmp_path):
    """A tiny PaddleClas list dataset: 40 PNGs, train_list.txt and val_list.txt."""
    root = tmp_path / "data"
    (root / "imgs").mkdir(parents=True)
    lines = []
    for i in range(40):
        _png(root / "imgs" / f"{i:03d}.png", i * 6)
        lines.append(f"imgs/{i:03d}.png {i % 10}")
    (root / "train_list.txt").write_text("\n".join(lines[:32]) + "\n")
    (root / "val_list.txt").write_text("\n".join(lines[32:]) + "\n")
    return root


def _list_config(finished, root, **data):
    config = finished.config()
    with config.unlocked():
        config.data.update(dict(source="list", root=str(root), num_classes=10, image_size=28, train_limit=0,
                                test_limit=0, **data))
        config.train.batch_size = 8
    return config


def test_bad_validation_list_is_found_before_training(finished, list_data, tmp_path):
    """The finding: a validation list that only fails at the first evaluation, after an epoch. Now every list is
    parsed in full and every path checked when the run starts."""
    val = list_data / "val_list.txt"
    val.write_text(val.read_text().replace("imgs/035.png", "imgs/035.PNG"))
    wd = tmp_path / "run"
    out = kdjax(finished, wd, "--config.data.source=list", f"--config.data.root={list_data}",
                "--config.data.num_classes=10", "--config.data.image_size=28", "--config.data.train_limit=0",
                "--config.data.test_limit=0", "--config.train.batch_size=8")
    one_line(out, f"{val} line 4: {list_data}/imgs/035.PNG does not exist", "data.skip_bad_images")
    assert not wd.exists()  # nothing written


@pytest.mark.parametrize("encoding, expected", [
    ("utf-16", "is UTF-16 text; kdjax reads UTF-8"),
    ("latin-1", "line 3 is not UTF-8 text (byte 0xe9 at column 9"),
    ("utf-8-sig-crlf", None),
])
def test_list_file_encodings(finished, list_data, encoding, expected):
    from kdjax.config.check import check
    from kdjax.errors import DataError

    lines = (list_data / "train_list.txt").read_text().splitlines()
    if encoding == "latin-1":
        os.rename(list_data / "imgs" / "002.png", list_data / "imgs" / "caf\u00e9.png")
        lines[2] = "imgs/caf\u00e9.png 2"
        data = "\n".join(lines).encode("latin-1")
    elif encoding == "utf-16":
        data = "\n".join(lines).encode("utf-16")
    else:  # a byte-order mark (the finding: it made the first path wrong) and Windows line ends are fine
        data = b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n"
    (list_data / "train_list.txt").write_bytes(data)
    config = _list_config(finished, list_data)
    if expected is None:
        checked = check(config)
        assert len(checked.train) == 32 and checked.train.path(0).endswith("imgs/000.png")
        return
    with pytest.raises(DataError) as e:
        check(config)
    assert str(list_data / "train_list.txt") in str(e.value) and expected in str(e.value), str(e.value)


def test_changed_data_behind_the_same_config_is_refused(finished, list_data, tmp_path):
    from kdjax.config.check import check
    from kdjax.errors import ConfigError
    from kdjax.config.identity import identity
    from kdjax.runtime.workdir import compare_workdir, record_identity

    config = _list_config(finished, list_data)
    wd = tmp_path / "run"
    (wd / "checkpoints" / "8").mkdir(parents=True)  # a run with progress
    record_identity(str(wd), identity(config, check(config)))
    assert compare_workdir(str(wd), identity(config, check(config))) == "same"
    train = list_data / "train_list.txt"
    train.write_text(train.read_text().replace("imgs/005.png 5", "imgs/005.png 4"))  # one label edited
    with pytest.raises(ConfigError, match=r"the train data differ from when this run started \(32 examples"):
        compare_workdir(str(wd), identity(config, check(config)))


# ---- damaged workdir files -------------------------------------------------------------------------------------

def test_damaged_or_missing_config_json_beside_good_checkpoints(finished, tmp_path):
    wd = copy_run(finished, tmp_path / "run", unfinished=True)
    (wd / "config.json").write_bytes(b'{"seed": 0, "mod\xff\xfe garbage')
    before = listing(wd)
    line = one_line(kdjax(finished, wd), "config.json is damaged", "cannot tell what they were built from",
                    "--restart", "new --workdir")
    assert "different config" not in line
    assert listing(wd) == before
    os.remove(wd / "config.json")
    before = listing(wd)
    line = one_line(kdjax(finished, wd), "no config.json", "put it back", "--restart")
    assert "different config" not in line
    assert listing(wd) == before and not (wd / "config.json").exists()  # not rewritten from this command


def test_garbage_spec_json_is_one_line(finished, tmp_path):
    teacher = tmp_path / "teacher"
    shutil.copytree(finished.teacher, teacher)
    (teacher / "spec.json").write_bytes(b"\x00\x9c\xffgarbage{")
    other = with_teacher(finished, tmp_path, teacher)
    one_line(kdjax(other, tmp_path / "run"), "config.models.Teacher.init", "spec.json is damaged: not valid JSON")
    assert not (tmp_path / "run").exists()
    out = kdjax(finished, None, f"--export_dir={teacher}", str(tmp_path), module="kdjax.infer")
    one_line(out, "spec.json is damaged", prefix="kdjax.infer: error:")


def test_stray_bytes_in_metrics_jsonl_do_not_block_a_resume(tmp_path):
    from kdjax.runtime.run_log import _drop_records_after

    path = tmp_path / "metrics.jsonl"
    good = [json.dumps({"step": s, "kind": "train", "loss": 1.0}).encode() + b"\n" for s in (1, 2, 3)]
    path.write_bytes(good[0] + b"\xff\xfe\x00garbage\n" + good[1] + b'{"step": 9, "kind": "tr' + b"\n" + good[2]
                     + b'{"step": 2')
    _drop_records_after(str(path), 2)
    assert path.read_bytes() == good[0] + good[1]
    assert sorted(os.listdir(tmp_path)) == ["metrics.jsonl"]


# ---- kdjax.infer -----------------------------------------------------------------------------------------------

def _huge_png(path, width=25000, height=25000):
    """A PNG header claiming 25000×25000 pixels (what PIL reads before refusing or decoding)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_infer_flags_and_a_huge_image_are_one_line(finished, tmp_path):
    export = finished.workdir / "export"
    image = tmp_path / "a.png"
    _png(image, 100)
    for flag in ("--batch_size=0", "--topk=0"):
        out = kdjax(finished, None, f"--export_dir={export}", flag, str(image), module="kdjax.infer")
        one_line(out, f"{flag.split('=')[0]} must be a whole number >= 1, got 0", prefix="kdjax.infer: error:")
    huge = tmp_path / "huge.png"
    _huge_png(huge)
    out = kdjax(finished, None, f"--export_dir={export}", str(huge), module="kdjax.infer")
    one_line(out, str(huge), "25000", "downscale", prefix="kdjax.infer: error:")


# ---- SIGTERM ends every mode promptly --------------------------------------------------------------------------

def _term_after(finished, argv, delay, *, module="kdjax.main"):
    p = subprocess.Popen([sys.executable, "-m", module, *argv], cwd=REPO, env=finished.env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    sent = time.time()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    return p.returncode, time.time() - sent, out, err


def test_sigterm_during_eval_ends_promptly_with_exit_0(finished):
    # the whole test split (10000 images) one image per step: evaluation runs long enough to be interrupted (at 8
    # per step, with the split decoded once into memory, it could finish within the 8 s before the signal)
    argv = [f"--config={finished.config_file}", f"--workdir={finished.workdir}", "--mode=eval",
            "--config.data.test_limit=0", "--config.train.eval_batch_size=1"]
    before = listing(finished.workdir)
    code, took, out, err = _term_after(finished, argv, 8.0)
    assert code == 0 and "Traceback" not in err, err[-2000:]
    assert "SIGTERM: stopped" in err and "Evaluation of" not in out, (out, err[-2000:])  # stopped, not finished
    assert took < 10, took
    assert listing(finished.workdir) == before


def test_sigterm_while_a_resume_starts_ends_promptly_and_loses_nothing(finished, tmp_path):
    wd = copy_run(finished, tmp_path / "run", unfinished=True)
    shutil.rmtree(wd / "export")
    before = listing(wd / "checkpoints")
    code, took, out, err = _term_after(finished, [f"--config={finished.config_file}", f"--workdir={wd}"],
                                       random.uniform(2.0, 6.0))
    assert code == 0 and "Traceback" not in err, err[-2000:]
    assert took < 10, took
    assert listing(wd / "checkpoints") == before and not leftovers(wd)
