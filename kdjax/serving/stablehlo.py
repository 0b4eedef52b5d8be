"""`python -m kdjax.export --format=stablehlo --export_dir=DIR [--out=FILE]` (the command is kdjax/export.py): the
exported model as a serialized `jax.export` artifact.

The artifact is StableHLO with the parameters baked in and the batch dimension symbolic; it takes uint8 NHWC
images and returns logits (normalisation included), so `kdjax/serving/loader.py` — plain JAX + numpy, none of
kdjax's model code — can run it anywhere JAX runs. A `FILE.json` beside it carries the input size and labels.
"""

import json
import os

import jax
import jax.numpy as jnp


def export_stablehlo(export_dir: str, out_path: str = None, platforms=("cpu",)) -> str:
    from jax import export as jax_export

    from kdjax.models.distillation import normalize
    from kdjax.weights.export_dir import build_from_spec, load_export

    variables, spec = load_export(export_dir)
    model = build_from_spec(spec)
    variables = jax.tree.map(jnp.asarray, variables)

    def serve(images_uint8):
        return model.apply(variables, normalize(images_uint8, spec["mean"], spec["std"]), train=False)

    (batch,) = jax_export.symbolic_shape("batch")
    h, w, c = spec["input_size"]
    exported = jax_export.export(jax.jit(serve), platforms=list(platforms))(
        jax.ShapeDtypeStruct((batch, h, w, c), jnp.uint8))
    out_path = out_path or os.path.join(export_dir, "model.jax_exported")
    with open(out_path, "wb") as f:
        f.write(exported.serialize())
    with open(out_path + ".json", "w") as f:
        json.dump({"input_size": spec["input_size"], "input_dtype": "uint8", "layout": "NHWC",
                   "num_classes": spec["num_classes"], "label_names": spec.get("label_names"),
                   "arch": spec["arch"], "platforms": list(platforms)}, f, indent=2)
    return out_path
