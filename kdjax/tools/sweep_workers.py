"""The sweep's runs on several processes at once (`workers` in the sweep config; kdjax/tools/sweep.py).

Why: a benchmark student is small, and XLA:CPU makes little use of a second core for it. Measured on the 2-core VM:
a KD tuning run (1 epoch of 50k Fashion-MNIST images, compiled step cached) took 16.0 s on both cores alone and
16.2 s each as two single-core processes at once (2.0× the runs); SP's 4-epoch tuning trained at a median 5,258
img/s on 2 cores and 3,693 + 3,529 img/s as two workers (1.4×), from the full sweep's logs of 2026-12-02.

How: each worker is a fresh process (spawn) pinned to its share of the cores before JAX starts, so XLA sizes its
thread pool to that share. It takes the next unfinished run of the protocol (kdjax.tools.sweep.pending_runs: tuning
trials first, a method's final seeds once its trials are finished) that no other worker holds, holding an exclusive
flock on `WORKDIR/.claims/<run>.lock` while it runs; a worker that dies drops its claims with it, and the run is
taken again (it resumes from its checkpoints). Runs print to `WORKDIR/logs/worker<i>.log`; the "sweep:" lines go to
the terminal. SIGTERM to the sweep reaches every worker: each checkpoints and stops, and the same command resumes.

A run's arithmetic depends on its thread count at float-rounding level (the same 1-epoch run: val top-1 0.8660 on 2
threads, 0.8651 on 1), so the report records the worker count; every run of one invocation has the same share.
"""

import fcntl
import multiprocessing
import os
import signal
import sys
import time
import traceback

WAIT_S = 5.0  # a worker with nothing to take (the rest is held, or waits for a method's tuning) looks again


def shares(cores, n: int):
    """`cores` split into n near-equal contiguous groups."""
    cores = sorted(cores)
    size, extra = divmod(len(cores), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(cores[start:end])
        start = end
    return out


def check(sweep, n: int):
    """Refuse a worker count this machine cannot give a core each, or an accelerator (one device, N processes)."""
    from kdjax.errors import ConfigError

    cores = len(os.sched_getaffinity(0))
    if n > cores:
        raise ConfigError("workers", f"is {n}, but this process may use {cores} CPU cores: each worker needs one; "
                                     f"set workers <= {cores} (0: one per core)")
    import jax

    if n > 1 and jax.default_backend() != "cpu":
        raise ConfigError("workers", f"is {n} on a {jax.default_backend()} backend: the workers would share its "
                                     f"devices; set workers=1")


def run(sweep, workdir: str, exports: dict, n: int) -> bool:
    """Run every pending run on n workers; True when the protocol's runs are all finished."""
    from kdjax.errors import KdjaxError
    from kdjax.runtime import preemption
    from kdjax.tools import sweep as sweep_mod

    check(sweep, n)
    groups = shares(os.sched_getaffinity(0), n)
    os.makedirs(os.path.join(workdir, "logs"), exist_ok=True)
    os.makedirs(os.path.join(workdir, ".claims"), exist_ok=True)
    print(f"sweep: {n} workers, cores {groups}; each run's output: {os.path.join(workdir, 'logs', 'worker<i>.log')}",
          flush=True)
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_worker, args=(sweep, workdir, exports, i, n, groups[i], os.getpid()),
                             name=f"sweep-worker{i}") for i in range(n)]
    forwarded = []

    def forward(*_):  # SIGTERM: every worker checkpoints and stops; this process waits for them
        forwarded.append(True)
        for p in procs:
            if p.pid is not None and p.exitcode is None:
                os.kill(p.pid, signal.SIGTERM)

    preemption.begin_write()  # kdjax's SIGTERM handling must not exit this process before its workers
    previous = signal.signal(signal.SIGTERM, forward)
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if not forwarded:
            preemption.end_write()
    failed = [i for i, p in enumerate(procs) if p.exitcode]
    finished = all(sweep_mod.finished(d) for d in sweep_mod.all_runs(sweep, workdir))
    if failed and not finished:
        logs = ", ".join(os.path.join(workdir, "logs", f"worker{i}.log") for i in failed)
        raise KdjaxError(f"sweep: worker {', '.join(map(str, failed))} stopped with an error; see {logs}. "
                         f"Finished runs are kept: run the same command again to resume")
    if forwarded:
        preemption.end_write()  # (exits 0 here, as any kdjax command stopped by SIGTERM)
    return finished


def _claim(workdir: str, directory: str):
    """An open fd holding the run's claim, or None when another worker holds it."""
    name = os.path.relpath(directory, workdir).replace(os.sep, "__") + ".lock"
    fd = os.open(os.path.join(workdir, ".claims", name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _stop_with_parent(parent: int):
    """A worker gets SIGTERM (checkpoint and stop) when the sweep process dies, even by SIGKILL (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def _worker(sweep, workdir: str, exports: dict, index: int, n: int, cores, parent: int):
    """One worker process: pinned to `cores`, output to its log, runs until nothing is left (exit 0), stopped by
    SIGTERM (exit 0, runs resumable) or a run's error (exit 1, the error in its log and one line on the terminal)."""
    os.sched_setaffinity(0, cores)  # before JAX creates its CPU client, which sizes its thread pool from this
    terminal = os.fdopen(os.dup(1), "w", buffering=1)
    log = open(os.path.join(workdir, "logs", f"worker{index}.log"), "a", buffering=1)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)

    def say(line: str):
        for stream in (terminal, log):
            print(f"sweep: [worker {index}] {line}", file=stream, flush=True)

    import kdjax.runtime.xla_flags  # noqa: F401  (kdjax's XLA flags and compilation cache, before JAX starts)
    from absl import logging as absl_logging

    from kdjax.runtime import preemption

    absl_logging.set_verbosity(absl_logging.WARNING)
    preemption.listen_for_sigterm()
    _stop_with_parent(parent)
    try:
        _work(sweep, workdir, exports, n, say)
    except KeyboardInterrupt:  # Ctrl-C reaches every worker: finished runs are kept, the same command resumes
        say("interrupted; run the same command again to resume")
        os._exit(130)
    except BaseException as e:  # noqa: BLE001  (the parent reports the worker; the details go to its log)
        traceback.print_exc()
        say(f"stopped with an error: {type(e).__name__}: {e}")
        sys.stdout.flush()
        os._exit(1)


def _work(sweep, workdir: str, exports: dict, n: int, say):
    from kdjax.tools import sweep as sweep_mod

    everything = sweep_mod.all_runs(sweep, workdir)
    started, ran = time.time(), 0
    while True:
        taken = False
        for directory, what, config in sweep_mod.pending_runs(sweep, workdir, exports):
            fd = _claim(workdir, directory)
            if fd is None:
                continue
            try:
                if sweep_mod.finished(directory):  # finished by another worker since it was listed
                    continue
                left = sum(not sweep_mod.finished(d) for d in everything)
                eta = f", about {(time.time() - started) / ran * left / n / 60:.0f} min left" if ran else ""
                say(f"run {len(everything) - left + 1}/{len(everything)}: {what}{eta}")
                if sweep_mod.execute(config(), directory).get("preempted"):
                    say("stopped; run the same command again to continue where it stopped")
                    return
                ran += 1
                taken = True
                break  # list again: a finished tuning may have made a method's final runs ready
            finally:
                os.close(fd)
        if not taken:
            if all(sweep_mod.finished(d) for d in everything):
                return
            time.sleep(WAIT_S)
