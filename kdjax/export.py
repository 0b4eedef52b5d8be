"""Export one model of a training run, or turn an export into a serving artifact.

  python -m kdjax.export --workdir=DIR [--model=NAME] [--step=N | --best] --out=DIR2
      any sub-model (default: the run's export model) of any checkpoint (default: the newest) or of the best
      model (WORKDIR/best, kept by top-1), written as a standard export directory (spec.json + variables/)
  python -m kdjax.export --format=stablehlo --export_dir=DIR [--out=FILE]
      an export as a serialized jax.export artifact (StableHLO, parameters baked in; kdjax/serving/stablehlo.py);
      with --workdir instead of --export_dir, the chosen model is exported to --out first and the artifact written
      inside it (--out/model.jax_exported)
"""

import kdjax.runtime.xla_flags  # noqa: F401  (kdjax's XLA flags, as kdjax.main: before JAX starts)

from kdjax.cli import flags as cli_flags  # noqa: E402

_WORKDIR = cli_flags.DEFINE_string("workdir", None, "Training workdir to export from.")
_MODEL = cli_flags.DEFINE_string("model", None, "Sub-model to export (default: the run's export_model).")
_STEP = cli_flags.DEFINE_integer("step", None, "Checkpoint step to export (default: the newest).")
_BEST = cli_flags.DEFINE_bool("best", False, "Export from the best model (highest eval top-1 of the export model).")
_EXPORT = cli_flags.DEFINE_string("export_dir", None, "--format=stablehlo: the export directory to convert.")
_OUT = cli_flags.DEFINE_string("out", None, "Where to write: an export directory (--workdir), or the artifact file "
                                            "(--format=stablehlo --export_dir; default EXPORT_DIR/model.jax_exported).")
_FORMAT = cli_flags.DEFINE_enum("format", None, ["kdjax", "stablehlo"], "kdjax: export directory (default with "
                                "--workdir); stablehlo: serving artifact (default with --export_dir alone).")
FLAG_NAMES = ("workdir", "model", "step", "best", "out", "format", "export_dir")


def main(argv):
    del argv
    import os

    from absl import logging as absl_logging

    from kdjax.errors import KdjaxError

    absl_logging.set_verbosity(absl_logging.ERROR)  # Orbax warns that a read-only checkpoint folder is read-only
    fmt = _FORMAT.value or ("kdjax" if _WORKDIR.value else "stablehlo")
    if _WORKDIR.value and _EXPORT.value:
        raise KdjaxError("give --workdir (export a model of a run) or --export_dir (convert an export), not both")
    if _WORKDIR.value:
        from kdjax.weights.from_workdir import export_from_workdir

        if not _OUT.value:
            raise KdjaxError("--out=DIR is required with --workdir (the export directory to write)")
        source = export_from_workdir(_WORKDIR.value, _OUT.value, model=_MODEL.value, step=_STEP.value,
                                     best=_BEST.value)
        what = f"checkpoint step {source['step']}"
        if source.get("best") or source.get("frozen"):
            what = "best model" if source.get("best") else "its init (frozen, the same at every step)"
        print(f"exported {source['model']} of {os.path.abspath(_WORKDIR.value)} ({what}) → "
              f"{os.path.abspath(_OUT.value)}")
        if fmt == "stablehlo":
            from kdjax.serving.stablehlo import export_stablehlo

            path = export_stablehlo(_OUT.value)
            print(f"wrote {path} (+ .json); run it with: python kdjax/serving/loader.py {path} IMAGES...")
        else:
            print(f"  try: python -m kdjax.infer --export_dir={_OUT.value} IMAGES...")
        return
    if fmt != "stablehlo":
        raise KdjaxError("--format=kdjax exports a model of a run: give --workdir (and --out)")
    if not _EXPORT.value:
        raise KdjaxError("--export_dir is required (or --workdir to export a model of a run)")
    if _MODEL.value or _STEP.value is not None or _BEST.value:
        raise KdjaxError("--model / --step / --best choose a model of a run: give --workdir")
    from kdjax.serving.stablehlo import export_stablehlo

    path = export_stablehlo(_EXPORT.value, _OUT.value)
    print(f"wrote {path} (+ .json); run it with: python kdjax/serving/loader.py {path} IMAGES...")


def cli():
    from kdjax.cli.run import run_command

    run_command(main, prog="kdjax.export", module="kdjax.export", doc=__doc__, flag_names=FLAG_NAMES)


if __name__ == "__main__":
    cli()
