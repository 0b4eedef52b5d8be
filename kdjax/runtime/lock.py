"""One writer per workdir: an exclusive `flock` on `WORKDIR/.lock`, which records who holds it.

Two runs writing one workdir mix their checkpoints and logs (Orbax tmp directories clash, metrics.jsonl gets each
step twice); the second is refused instead, naming the holder's host and PID.

- The kernel drops a flock when its holder dies (SIGKILL, OOM kill), so a lock left by a dead process on this host
  is simply taken over; the PID it records is only used to word the messages.
- flock over NFS is only as good as the mount's lock service (`nolock` mounts lock locally), so a lock file written
  on another host is trusted even when flock succeeds: while its holder's heartbeat (the file's mtime, touched
  every HEARTBEAT_S seconds by a thread) is fresher than STALE_S, the run is refused with the host, the PID and how
  to clear it. Older than that, it is taken over with a warning.
- Multi-host runs share the workdir: process 0 alone takes the lock, and the others learn whether it did.
- `--mode=eval` and `kdjax.infer` only read: they never take it.
"""

import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
from typing import Optional

from kdjax.errors import CheckpointError

LOCK_FILE = ".lock"
HEARTBEAT_S = 30.0
STALE_S = 300.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 4096)
        holder = json.loads(data.decode("utf-8", "replace") or "{}")
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return f"PID {holder.get('pid', '?')} on host {holder.get('host', '?')} (started {when})"


class WorkdirLock:
    """`acquire()` takes WORKDIR/.lock (creating WORKDIR) or raises CheckpointError; `release()` lets it go.

    Released automatically when the process exits, however it exits."""

    def __init__(self, workdir: str):
        self.workdir = os.path.abspath(workdir)
        self.path = os.path.join(self.workdir, LOCK_FILE)
        self._fd: Optional[int] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "WorkdirLock":
        self._stop = threading.Event()
        os.makedirs(self.workdir, exist_ok=True)
        created = not os.path.lexists(self.path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            flocked = True
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    flocked = False  # a file system without locks: the recorded holder is all there is
                elif e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise CheckpointError(self._busy_message(_read_holder(fd), flock_held=True)) from None
                else:
                    raise
            holder = _read_holder(fd)
            if not flocked:
                self._check_same_host(holder)
            self._check_other_host(holder)
            try:
                self._write_holder(fd)
            except OSError as e:  # a full disk: leave no empty lock file behind
                if created:
                    os.remove(self.path)
                raise OSError(e.errno, e.strerror, self.path) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._thread = threading.Thread(target=self._heartbeat, name="kdjax-workdir-lock", daemon=True)
        self._thread.start()
        return self

    def _check_same_host(self, holder: dict):
        """Without flock: a holder recorded on this host is alive if its PID is (and it is not us)."""
        pid = holder.get("pid")
        if holder.get("host") == socket.gethostname() and isinstance(pid, int) and pid != os.getpid() \
                and _pid_alive(pid):
            raise CheckpointError(self._busy_message(holder, flock_held=True))
        print(f"kdjax: warning: {self.path}: this file system has no file locks; kdjax relies on the PID and host "
              f"the lock file records", file=sys.stderr, flush=True)

    def _check_other_host(self, holder: dict):
        """flock succeeded; a holder recorded on another host may still be alive (flock on NFS is not reliable)."""
        host = holder.get("host")
        if not host or host == socket.gethostname():
            return  # on this host a successful flock proves the recorded holder is gone
        try:
            age = time.time() - os.stat(self.path).st_mtime
        except OSError:
            age = STALE_S
        if age < STALE_S:
            raise CheckpointError(self._busy_message(holder, flock_held=False, age=age))
        print(f"kdjax: warning: taking over {self.path}, left by {_describe(holder)}, silent for {age:.0f}s",
              file=sys.stderr, flush=True)

    def _busy_message(self, holder: dict, flock_held: bool, age: float = 0.0) -> str:
        who = _describe(holder) if holder else "another process"
        text = f"--workdir={self.workdir} is in use by {who}: one run writes a workdir at a time."
        same_host = holder.get("host") == socket.gethostname()
        pid = holder.get("pid")
        if flock_held and same_host and isinstance(pid, int) and not _pid_alive(pid):
            text += (f" PID {pid} is gone but its lock is still held, probably by a process it started; find it "
                     f"with `fuser {self.path}` and stop it.")
        elif flock_held:
            text += " Wait for it to finish (or stop it), or use another --workdir."
        else:
            text += (f" That host refreshed the lock {age:.0f}s ago. If that run is really gone, delete {self.path} "
                     f"(or wait {STALE_S - age:.0f}s); otherwise wait for it, or use another --workdir.")
        return text

    def _write_holder(self, fd: int):
        record = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
                             "argv": sys.argv[:8]}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)

    def _heartbeat(self):
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:  # a full or read-only disk shows up where the run writes, with a proper message
                pass

    def release(self):
        """Let the lock go (the file stays: deleting it would let two processes lock two different files)."""
        self._stop.set()
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            except OSError:  # never locked (a file system without locks)
                pass
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def hold_workdir(workdir: str) -> Optional[WorkdirLock]:
    """The lock of `workdir` for this run: taken by process 0 only; every process raises if it could not be."""
    import jax

    lock, error = None, None
    if jax.process_index() == 0:
        try:
            lock = WorkdirLock(workdir).acquire()
        except Exception as e:  # the other processes must hear about it before anyone raises
            error = e
    if jax.process_count() > 1:
        import numpy as np
        from jax.experimental import multihost_utils

        ok = int(multihost_utils.broadcast_one_to_all(np.int32(error is None)))
        if not ok and error is None:
            raise CheckpointError(f"process 0 could not lock --workdir={workdir}; see its message")
    if error is not None:
        raise error
    return lock
