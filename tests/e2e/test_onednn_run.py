"""The default job (teacher first, then DKD) on real Fashion-MNIST images with KDJAX_CONV=onednn: every convolution
goes through the oneDNN kernels, and the run learns what the XLA-convolution run learns (same seed, same data).

The two runs differ only in float32 rounding inside the convolutions, so the first steps agree to ~1e-5 and the
final accuracies within what a different seed would change (measured on the full run: see the README)."""

import json

import jax
import pytest

from conftest import load_config, tiny
from kdjax.kernels import conv as fast_conv
from kdjax.kernels import onednn

pytestmark = pytest.mark.skipif(not onednn.available(), reason=f"oneDNN kernels not built "
                                                               f"({onednn.why_unavailable()}); {onednn.BUILD_HINT}")


def _run(tmp_path_factory, monkeypatch, choice):
    from kdjax import train

    calls = []
    conv2d = onednn.conv2d

    def counting(*args, **kwargs):
        calls.append(tuple(args[0].shape))
        return conv2d(*args, **kwargs)

    jax.clear_caches()  # the convolution choice is read when a step is traced: no trace of the other run reused
    monkeypatch.setattr(fast_conv, "BACKEND", choice)
    monkeypatch.setattr(onednn, "conv2d", counting)
    workdir = tmp_path_factory.mktemp(f"dkd_{choice}")
    summary = train.run(tiny(load_config("configs/dkd.py")), str(workdir))
    with open(workdir / "metrics.jsonl") as f:
        losses = [r["loss"] for r in map(json.loads, f) if r["kind"] == "train"]
    monkeypatch.undo()
    return summary["eval"], losses, calls


def test_default_run_with_onednn_convolutions_learns_the_same(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    ref_eval, ref_losses, ref_calls = _run(tmp_path_factory, monkeypatch, "xla")
    eval_, losses, calls = _run(tmp_path_factory, monkeypatch, "onednn")
    assert not ref_calls and calls, "KDJAX_CONV=onednn must route the zoo's convolutions (and xla must not)"
    assert len(losses) == len(ref_losses)
    # the first logged loss is after a few steps: rounding has barely had a chance to move the weights
    assert abs(losses[0] - ref_losses[0]) <= 1e-3 * abs(ref_losses[0]), (losses[:3], ref_losses[:3])
    assert losses[-1] < losses[0]
    for key in ("Teacher/top1", "Student/top1"):
        # 500 test images: one seed to another moves these by ~1-2 points at this size
        assert abs(eval_[key] - ref_eval[key]) <= 0.03, (key, eval_[key], ref_eval[key])
