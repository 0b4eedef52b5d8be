"""kdjax/tools/mfu.py: which published peak a device and precision are compared with, and the measured CPU peak."""

import pytest

from kdjax.tools import mfu


@pytest.mark.parametrize("kind,platform,precision,tflops,key", [
    ("NVIDIA H200", "gpu", "bfloat16", 989.0, "bf16"),
    ("NVIDIA H100 80GB HBM3", "gpu", "float32", 494.7, "tf32"),  # XLA:GPU's float32 default is TF32
    ("NVIDIA A100-SXM4-40GB", "gpu", "bfloat16", 312.0, "bf16"),
    ("TPU v4", "tpu", "float32", 275.0, "bf16"),                # float32 dots run as bf16 MXU passes
    ("TPU v5 lite", "tpu", "bfloat16", 197.0, "bf16"),          # v5e
    ("TPU v5p", "tpu", "bfloat16", 459.0, "bf16"),
    ("TPU v6 lite", "tpu", "bfloat16", 918.0, "bf16"),          # v6e
])
def test_published_peaks_are_named_in_the_output(kind, platform, precision, tflops, key):
    flops, source = mfu.published_peak(kind, platform, precision)
    assert flops == tflops * 1e12 and key in source and f"{tflops:g} TFLOP/s" in source


def test_unknown_chip_has_no_peak():
    assert mfu.published_peak("NVIDIA GeForce GTX 1080", "gpu", "float32") is None


def test_cpu_peak_is_a_timed_matmul():
    flops, source = mfu.measured_cpu_peak(n=256, reps=3)
    assert flops > 1e8 and "256x256 matmul" in source
