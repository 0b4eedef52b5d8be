"""OS-level failures through the real CLI (issue 17): disk full (at start, while training, while exporting), a
read-only workdir (fresh, resumed, finished), permission denied, a workdir that is a file or lies under one,
--restart on a mount point, and an Orbax failure text: one line naming the path and the errno's meaning, exit code
2, what is saved; no checkpoint or export lost, no partial file left.

Disk full is a real one: a small tmpfs mounted in a user+mount namespace (`unshare --user --map-root-user
--mount`), filled at the chosen moment, so Orbax's C++ (TensorStore) writes get ENOSPC from the kernel exactly as
on a full disk. RLIMIT_FSIZE would give EFBIG and SIGXFSZ instead, and an OSError injected in Python cannot reach
TensorStore's writes; the injected variant still runs (`test_orbax_failure_text_is_one_line`) where namespaces are
not allowed. Read-only is a read-only bind mount in such a namespace; permission denied is a chmod, run without
CAP_DAC_OVERRIDE (`setpriv`) when the tests run as root.
"""

import os
import shlex
import shutil
import subprocess
import sys
import types

import pytest

from conftest import REPO
from test_bad_input import TOTAL, compile_cache, listing  # noqa: F401 (compile_cache: a fixture)
from test_faults import copy_run, finished, kdjax, leftovers, one_line, same_export  # noqa: F401 (finished)


def _userns() -> bool:
    try:
        return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


USERNS = _userns()
needs_userns = pytest.mark.skipif(not USERNS, reason="user+mount namespaces (unshare -rm) are not available here")


def in_namespace(finished, script, timeout=600):
    """Run a shell script as root of a new user+mount namespace (its mounts vanish with it)."""
    env = dict(finished.env, PYTHONPATH=os.pathsep.join(filter(None, [REPO, finished.env.get("PYTHONPATH")])))
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=env)


def kdjax_sh(finished, workdir, *args, out="out"):
    """The shell line that runs kdjax.main on `workdir` (inside a namespace script): stdout to `out`, stderr to
    `out`.err, the exit code to `out`.rc (read back with ns_result)."""
    argv = [sys.executable, "-m", "kdjax.main", f"--config={finished.config_file}", f"--workdir={workdir}", *args]
    return f"{' '.join(map(shlex.quote, argv))} > {out} 2> {out}.err; echo $? > {out}.rc"


def ns_result(directory, name):
    return types.SimpleNamespace(returncode=int((directory / f"{name}.rc").read_text()),
                                 stdout=(directory / name).read_text(), stderr=(directory / f"{name}.err").read_text())


# ---- the workdir path and OS failures --------------------------------------------------------------------------

def test_workdir_that_is_a_file_or_under_one(finished, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("not a folder")
    one_line(kdjax(finished, f), f"--workdir={f} is a file, not a folder")
    one_line(kdjax(finished, f / "run"), f"--workdir={f / 'run'} lies under {f}, which is a file")
    assert f.read_text() == "not a folder"


def _without_dac_override():
    """A command prefix under which chmod is obeyed (root normally overrides it)."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    return ("setpriv", "--bounding-set=-dac_override,-dac_read_search", "--")


def test_permission_denied_is_one_line(finished, tmp_path):
    parent = tmp_path / "locked"
    parent.mkdir()
    os.chmod(parent, 0o555)
    try:
        out = kdjax(finished, parent / "run", prefix=_without_dac_override())
    finally:
        os.chmod(parent, 0o755)
    one_line(out, f"{parent / 'run'}: Permission denied (EACCES)", "Nothing of this run was saved")
    assert os.listdir(parent) == []


@needs_userns
def test_read_only_workdir_fresh_resumed_and_finished(finished, tmp_path):
    done = copy_run(finished, tmp_path / "ro" / "done")
    resumed = copy_run(finished, tmp_path / "ro" / "resumed", unfinished=True)
    ro = tmp_path / "ro"
    before = listing(ro)
    script = "; ".join([
        f"mount --bind {ro} {ro} && mount -o remount,bind,ro {ro} || exit 99",
        f"cd {tmp_path}",
        kdjax_sh(finished, done, out="done"),
        kdjax_sh(finished, resumed, out="resumed"),
        kdjax_sh(finished, ro / "fresh", out="fresh"),
    ])
    ns = in_namespace(finished, script)
    assert ns.returncode == 0, ns.stderr[-2000:]
    out = ns_result(tmp_path, "done")
    assert out.returncode == 0 and "already finished" in out.stdout, out.stderr[-2000:]  # reading is all it needs
    one_line(ns_result(tmp_path, "resumed"), f"{resumed}/.lock: Read-only file system (EROFS)",
             "Saved and intact: checkpoint step", "the export")
    one_line(ns_result(tmp_path, "fresh"), f"{ro / 'fresh'}: Read-only file system (EROFS)")
    assert listing(ro) == before


@needs_userns
def test_disk_full_during_training_keeps_the_checkpoints_and_resumes(finished, tmp_path):
    disk, wd = tmp_path / "disk", tmp_path / "disk" / "run"
    disk.mkdir()
    script = f"""
mount -t tmpfs -o size=8m tmpfs {disk} || exit 99
cd {tmp_path}
({kdjax_sh(finished, wd, out='full')}) &
while [ ! -d {wd}/checkpoints/16 ] && [ ! -f full.rc ]; do sleep 0.05; done
dd if=/dev/zero of={disk}/filler bs=64k 2>/dev/null
wait
cp -a {wd} {tmp_path}/after
"""
    ns = in_namespace(finished, script)
    assert ns.returncode == 0, ns.stderr[-2000:]
    out = ns_result(tmp_path, "full")
    line = one_line(out, "No space left on device (ENOSPC)", "free some space", "Saved and intact: checkpoint step",
                    "run the same command again to resume")
    after = tmp_path / "after"
    assert not leftovers(after), leftovers(after)
    steps = sorted(int(n) for n in os.listdir(after / "checkpoints") if n.isdigit())
    assert steps and steps[-1] >= 16 and f"checkpoint step {steps[-1]} " in line, (steps, line)
    # stray bytes in metrics.jsonl (a disk that filled mid-line) must not block the resume
    with open(after / "metrics.jsonl", "ab") as f:
        f.write(b'{"step": 99, "kind": "tr\xff\xfe\x00')
    out = kdjax(finished, after)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"resuming from step {steps[-1]} of {TOTAL}" in out.stdout
    assert (after / "summary.json").is_file() and not leftovers(after)
    from kdjax.weights.export_dir import load_export

    load_export(str(after / "export"))


@needs_userns
def test_disk_full_at_start_leaves_no_partial_files(finished, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    script = f"""
mount -t tmpfs -o size=1m tmpfs {disk} || exit 99
cd {tmp_path}
head -c 4096 /dev/zero > {disk}/reserve
dd if=/dev/zero of={disk}/filler bs=4k 2>/dev/null
rm {disk}/reserve
{kdjax_sh(finished, disk / 'run', out='start')}
rm {disk}/filler
cp -a {disk} {tmp_path}/after
"""
    ns = in_namespace(finished, script)
    assert ns.returncode == 0, ns.stderr[-2000:]
    one_line(ns_result(tmp_path, "start"), "No space left on device (ENOSPC)", "Nothing of this run was saved")
    run = tmp_path / "after" / "run"
    assert not leftovers(run), leftovers(run)
    assert sorted(os.listdir(run)) in ([], [".lock"])  # one page held the lock record, config.json did not fit


@needs_userns
def test_disk_full_during_export_keeps_the_old_export(finished, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    wd = disk / "run"
    script = f"""
mount -t tmpfs -o size=4m tmpfs {disk} || exit 99
cd {tmp_path}
cp -a {finished.workdir} {wd} && rm {wd}/summary.json
head -c 16384 /dev/zero > {disk}/reserve
dd if=/dev/zero of={disk}/filler bs=4k 2>/dev/null
rm {disk}/reserve
{kdjax_sh(finished, wd, out='export')}
rm {disk}/filler
cp -a {wd} {tmp_path}/after
"""
    ns = in_namespace(finished, script)
    assert ns.returncode == 0, ns.stderr[-2000:]
    one_line(ns_result(tmp_path, "export"), "No space left on device (ENOSPC)",
             f"Saved and intact: checkpoint step {TOTAL}", "the export")
    after = tmp_path / "after"
    assert not leftovers(after), leftovers(after)
    assert same_export(after / "export", finished.workdir / "export")


@needs_userns
def test_restart_when_the_workdir_is_a_mount_point(finished, tmp_path):
    """rename() of a mount point fails with EBUSY: the old run moves into WORKDIR/old-DATE/ instead."""
    wd = tmp_path / "mnt"
    wd.mkdir()
    script = f"""
mount -t tmpfs -o size=16m tmpfs {wd} || exit 99
cd {tmp_path}
cp -a {finished.workdir}/. {wd}/
{kdjax_sh(finished, wd, '--restart', '--config.train.stop_after_steps=1', out='restart')}
cp -a {wd} {tmp_path}/after
"""
    ns = in_namespace(finished, script)
    assert ns.returncode == 0, ns.stderr[-2000:]
    out = ns_result(tmp_path, "restart")
    assert out.returncode == 0 and "cannot be renamed" in out.stdout, (out.stdout[-2000:], out.stderr[-2000:])
    after = tmp_path / "after"
    old = [n for n in os.listdir(after) if n.startswith("old-")]
    assert len(old) == 1
    moved = {k: v[0] for k, v in listing(after / old[0]).items()}
    original = {k: v[0] for k, v in listing(finished.workdir).items() if k != ".lock"}  # the lock stays in place
    assert moved == original  # every file of the old run, same sizes
    assert sorted(int(n) for n in os.listdir(after / "checkpoints") if n.isdigit()) == [1]  # the fresh run


def test_orbax_failure_text_is_one_line(finished, tmp_path, monkeypatch):
    """Injected at Orbax's write call (where namespaces are not allowed, this is the disk-full check): Orbax and
    TensorStore quote the OS error in exceptions of their own types."""
    import orbax.checkpoint as ocp

    from kdjax import train
    from kdjax.errors import CheckpointError

    wd = copy_run(finished, tmp_path / "run", unfinished=True)
    before = listing(wd / "checkpoints")

    def full(self, *a, **k):
        raise ValueError('NOT_FOUND: Error writing local file "/x/variables/d/3": [OS error 28: No space left on '
                         'device] [tensorstore_spec=...]')

    monkeypatch.setattr(ocp.StandardCheckpointer, "save", full)
    with pytest.raises(CheckpointError) as e:
        train.run(finished.config(), str(wd))
    message = str(e.value)
    assert "No space left on device (ENOSPC)" in message and f"checkpoint step {TOTAL}" in message, message
    assert "\n" not in message
    assert listing(wd / "checkpoints") == before and not leftovers(wd)
    assert same_export(wd / "export", finished.workdir / "export")
