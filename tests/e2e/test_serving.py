"""StableHLO serving export: the artifact, run without kdjax or Flax, gives the export's logits."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from conftest import REPO

_LOADER_RUN = r"""
import importlib.util, json, sys
import numpy as np
sys.modules["kdjax"] = None  # the loader must not need kdjax ...
sys.modules["flax"] = None   # ... nor Flax
spec = importlib.util.spec_from_file_location("loader", {loader!r})
loader = importlib.util.module_from_spec(spec); spec.loader.exec_module(loader)
run, meta = loader.load({artifact!r})
images = np.load({images!r})
for n in (images.shape[0], 1):  # the batch dimension is symbolic
    out = run(images[:n])
np.save({out!r}, run(images))
print(json.dumps(meta))
"""


def test_stablehlo_artifact_round_trip(tmp_path):
    from kdjax.models.distillation import normalize
    from kdjax.weights.export_dir import export_logits_fn, make_spec, save_export
    from kdjax.models import get_model

    model = get_model("convnet_student", num_classes=10)
    variables = model.init(jax.random.PRNGKey(3), jnp.zeros((1, 28, 28, 1)))
    # non-trivial batch statistics, so a loader that ignored them would differ
    variables = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.PRNGKey(1), a.shape), variables)
    export_dir = str(tmp_path / "export")
    save_export(export_dir, variables, make_spec("convnet_student", {}, 10, [28, 28, 1], [0.3], [0.4],
                                                 [f"c{i}" for i in range(10)]))
    artifact = str(tmp_path / "model.jax_exported")
    out = subprocess.run([sys.executable, "-m", "kdjax.export", "--format=stablehlo", f"--export_dir={export_dir}",
                          f"--out={artifact}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28, 1), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    code = _LOADER_RUN.format(loader=os.path.join(REPO, "kdjax", "serving", "loader.py"), artifact=artifact,
                              images=str(tmp_path / "images.npy"), out=str(tmp_path / "logits.npy"))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    meta = json.loads(run.stdout.strip().splitlines()[-1])
    assert meta["input_size"] == [28, 28, 1] and meta["label_names"][3] == "c3"
    logits_fn, spec = export_logits_fn(export_dir)
    expected = np.asarray(logits_fn(normalize(images, spec["mean"], spec["std"])))
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), expected, rtol=1e-5, atol=1e-5)
