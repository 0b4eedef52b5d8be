"""`python -m kdjax.tools.paddleclas_translate PATH.yaml [-o KEY=VALUE ...] [--config.FIELD=VALUE ...]`: print the
kdjax config a PaddleClas distillation YAML translates to, where each part came from, the translation's notes, and
what it needs that is missing on this machine (dataset folders, list files, pretrained weights). Exit 0 when it
translates, 2 (one line naming the YAML field) when something cannot be translated.
"""

import argparse
import sys


def _set(config, dotted: str, text: str):
    """`--config.a.b=v` on the translated config (v parsed as a Python literal, else kept as a string)."""
    import ast

    from kdjax.errors import ConfigError

    node, parts = config, dotted.split(".")
    for part in parts[:-1]:
        if not hasattr(node, "keys") or part not in node:
            raise ConfigError(dotted, "no such config field")
        node = node[part]
    if not hasattr(node, "keys") or parts[-1] not in node:
        raise ConfigError(dotted, "no such config field")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    with config.unlocked():
        node[parts[-1]] = value


def main(argv=None) -> int:
    from kdjax.cli.run import guarded

    parser = argparse.ArgumentParser(prog="python -m kdjax.tools.paddleclas_translate",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("yaml", help="the PaddleClas YAML (e.g. ppcls/configs/ImageNet/Distillation/...yaml)")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                        help="PaddleClas override applied to the YAML first (repeatable), e.g. -o Global.epochs=2")
    args, rest = parser.parse_known_args(argv)
    bad = [a for a in rest if not (a.startswith("--config.") and "=" in a)]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")

    def run():
        from kdjax.config.paddleclas import describe, translate_file

        config = translate_file(args.yaml, args.override)
        for a in rest:
            key, value = a[len("--config."):].split("=", 1)
            _set(config, key, value)
        print(describe(config))
        return 0

    return guarded(run, prog="kdjax.tools.paddleclas_translate")


def cli():
    sys.exit(main())


if __name__ == "__main__":
    cli()
