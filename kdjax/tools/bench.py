"""Times kdjax's real train step: `python -m kdjax.tools.bench --config=configs/dkd.py:cifar100 --batch=64 --steps=20`.

The step is built exactly as training builds it (`Trainer.build_train_step`: same DistillationModel, losses,
optimizer, shardings, jit signature and donation, compiled on the first call) and run on one synthetic batch that
is already on the device. A model whose `init` is not an existing path (no teacher checkpoint, or init="train")
gets a random init: timing does not need trained weights. No data is read.

Prints ONE JSON line: images_per_s (batch / median step time over `--steps` timed steps, after `--warmup`
untimed ones), step_ms_median, compile_s (first call minus a median step), peak_rss_mb (the process' peak
resident memory, compile included), device, batch, config; and the step's utilisation (kdjax/tools/mfu.py):
flops_per_step (XLA's cost analysis of the compiled step, all devices), achieved_tflops (per second), peak_tflops
and peak_source (on CPU a float32 matmul timed in this process, the whole host; on GPU/TPU the chip's published
peak for the step's precision times the device count) and mfu = achieved / peak. `--mfu=false` skips them.

`--serve`: for `benchmarks/lockstep.py`, which alternates kdjax and PyTorch step by step in separate processes.
After compiling and warming up it prints `ready`, then reads commands from stdin: `step` runs one step and
prints its wall and CPU seconds; `done` prints the JSON line (over the served steps) and exits.
"""

import os

# compile_s times a compile: no persistent compilation cache here unless asked (KDJAX_COMPILE_CACHE=1)
os.environ.setdefault("KDJAX_COMPILE_CACHE", "0")
import kdjax.runtime.xla_flags  # noqa: E402,F401  (must come before jax)

import json
import resource
import statistics
import sys
import tempfile
import time

from kdjax.cli import flags as cli_flags

_CONFIG = cli_flags.DEFINE_config_file("config", "configs/dkd.py:cifar100", "Config file[:preset].",
                                          lock_config=False)
_BATCH = cli_flags.DEFINE_integer("batch", 0, "Global batch size; 0: the config's train.batch_size.")
_STEPS = cli_flags.DEFINE_integer("steps", 20, "Timed steps.")
_WARMUP = cli_flags.DEFINE_integer("warmup", 2, "Untimed steps after the first (compiling) one.")
_IMAGE_SHAPE = cli_flags.DEFINE_list("image_shape", None, "H,W,C of the synthetic images; default from the dataset "
                                                      "(fashion_mnist 28,28,1; cifar 32,32,3; else image_size).")
_NUM_CLASSES = cli_flags.DEFINE_integer("num_classes", 0, "Classes; default config.data.num_classes or 10.")
_SERVE = cli_flags.DEFINE_bool("serve", False, "Run steps on command from stdin (benchmarks/lockstep.py).")
_MFU = cli_flags.DEFINE_bool("mfu", True, "Report the step's FLOPs and the fraction of the device's peak.")


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def image_shape_for(config, override=None):
    if override:
        return tuple(int(v) for v in override)
    from kdjax.tools.preflight import declared_image_shape

    return declared_image_shape(config)


class StepBench:
    """The real train step of `config` on a synthetic on-device batch; `step()` runs one and returns seconds."""

    def __init__(self, config, *, batch: int = 0, image_shape=None, num_classes: int = 0, config_name: str = ""):
        import jax
        import numpy as np

        from kdjax.data.sources import DatasetInfo
        from kdjax.trainer import Trainer

        from kdjax.config.check import check

        with config.unlocked():
            if batch:
                config.train.batch_size = int(batch)
        check(config, splits=(), inits=False)  # before dropping inits: a frozen model must name one (or 'train')
        with config.unlocked():
            for m in config.models.values():
                if m.init and not os.path.exists(m.init):
                    m.init = ""  # no checkpoint needed to time a step
        self.config, self.config_name = config, config_name
        self.batch = int(config.train.batch_size)
        shape = image_shape_for(config, image_shape)
        classes = int(num_classes or config.data.get("num_classes") or 10)
        info = DatasetInfo(classes, None, shape, "synthetic")
        with tempfile.TemporaryDirectory() as tmp:
            phase = Trainer(config, tmp, None, None, info, "bench")
            self.train_step, self.state, self.frozen = phase.build_train_step(steps_per_epoch=1000,
                                                                              total_steps=1000 * 240)
        rng_np = np.random.default_rng(0)
        host = {"image": rng_np.integers(0, 256, (self.batch,) + shape, dtype=np.uint8),
                "label": rng_np.integers(0, classes, (self.batch,)).astype(np.int32)}
        for view in phase.losses.views:  # extra input views a loss reads (mlkd's strong view)
            host[f"image_{view}"] = rng_np.integers(0, 256, (self.batch,) + shape, dtype=np.uint8)
        self.data = phase.parallel.put_batch(host)
        self.rng = jax.random.PRNGKey(0)
        self.metrics = None

    def step(self) -> float:
        import jax

        t = time.perf_counter()
        self.state, self.metrics = self.train_step(self.state, self.frozen, self.data, self.rng)
        jax.block_until_ready((self.state, self.metrics))
        return time.perf_counter() - t

    def utilisation(self, step_s: float) -> dict:
        """FLOPs of the compiled step, achieved FLOP/s and the fraction of the peak (kdjax/tools/mfu.py)."""
        import jax

        from kdjax.tools import mfu

        devices = jax.devices()
        flops = mfu.step_flops(self.train_step.compiled, len(devices))
        peak, source = mfu.peak(self.config.get("precision", "float32"))
        if peak is not None and devices[0].platform != "cpu":
            peak, source = peak * len(devices), f"{source} x {len(devices)} devices"
        achieved = flops / step_s
        return {"flops_per_step": flops, "flops_per_image": flops / self.batch,
                "achieved_tflops": round(achieved / 1e12, 4),
                "peak_tflops": round(peak / 1e12, 4) if peak else None, "peak_source": source,
                "mfu": round(achieved / peak, 4) if peak else None}

    def result(self, times, first: float, with_mfu: bool = True) -> dict:
        import jax

        med = statistics.median(times)
        dev = jax.devices()
        config = self.config
        extra = self.utilisation(med) if with_mfu else {}
        return {
            "impl": "kdjax", "images_per_s": round(self.batch / med, 2), "step_ms_median": round(1000 * med, 2),
            "compile_s": round(max(first - med, 0.0), 3), "peak_rss_mb": round(peak_rss_mb(), 1),
            "device": f"{dev[0].platform} x{len(dev)} ({dev[0].device_kind})", "batch": self.batch,
            "config": self.config_name or "?", "models": {n: m.arch for n, m in config.models.items()},
            "losses": [e.type for e in config.losses.values()], "steps": len(times),
            "loss": float(jax.device_get(self.metrics["loss"])),
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "jax": jax.__version__,
            "precision": config.get("precision", "float32"), "kernels": config.get("kernels", "auto"), **extra,
        }


def run(config, *, batch: int = 0, steps: int = 20, warmup: int = 2, image_shape=None, num_classes: int = 0,
        config_name: str = "", with_mfu: bool = True) -> dict:
    """Build the real train step for `config`, time it on a synthetic on-device batch; returns the JSON dict."""
    bench = StepBench(config, batch=batch, image_shape=image_shape, num_classes=num_classes,
                      config_name=config_name)
    first = bench.step()  # compiles
    for _ in range(warmup):
        bench.step()
    return bench.result([bench.step() for _ in range(max(1, steps))], first, with_mfu)


def serve(config, *, batch: int = 0, warmup: int = 2, image_shape=None, num_classes: int = 0,
          config_name: str = "", stdin=None, stdout=None) -> None:
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    bench = StepBench(config, batch=batch, image_shape=image_shape, num_classes=num_classes,
                      config_name=config_name)
    first = bench.step()
    for _ in range(warmup):
        bench.step()
    print("ready", file=stdout, flush=True)
    times = []
    for line in stdin:
        command = line.strip()
        if command == "step":
            cpu0 = _cpu_seconds()
            times.append(bench.step())
            print(f"{times[-1]:.6f} {_cpu_seconds() - cpu0:.6f}", file=stdout, flush=True)
        elif command == "done":
            break
    print(json.dumps(bench.result(times or [bench.step()], first, with_mfu=False)), file=stdout, flush=True)


def main(argv):
    if len(argv) > 1:
        from kdjax.errors import KdjaxError

        raise KdjaxError(f"unexpected arguments: {argv[1:]}")

    name = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--config=")), "configs/dkd.py:cifar100")
    kwargs = dict(batch=_BATCH.value, warmup=_WARMUP.value, image_shape=_IMAGE_SHAPE.value,
                  num_classes=_NUM_CLASSES.value, config_name=name)
    if _SERVE.value:
        serve(_CONFIG.value, **kwargs)
        return
    result = run(_CONFIG.value, steps=_STEPS.value, with_mfu=_MFU.value, **kwargs)
    print(json.dumps(result), flush=True)


FLAG_NAMES = ('config', 'batch', 'steps', 'warmup', 'image_shape', 'num_classes', 'serve', 'mfu')


def cli():
    from kdjax.cli.run import run_command

    run_command(main, prog="kdjax.tools.bench", module="kdjax.tools.bench", doc=__doc__, flag_names=FLAG_NAMES)


if __name__ == "__main__":
    cli()
