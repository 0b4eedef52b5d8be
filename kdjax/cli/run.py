"""The one way every kdjax command runs: flags parsed by absl, `--help` that lists the command's own flags (exit 0),
and user errors (KdjaxError, bad flags, bad `--config.x=` overrides) as one line `<prog>: error: ...`, exit code 2,
no traceback. So is an OS failure that escapes (disk full, read-only, permission denied, a path that is a file, a
busy mount): the path and what the errno means. SIGINT exits 130 with a line saying how to resume."""

import sys
from typing import Callable, Sequence

from absl import app

from kdjax.cli.flags import help_text, parse_flags

HELP_ARGS = ("--help", "-h", "-help", "--helpshort", "--helpfull", "-?")


def fail(prog: str, message: str, code: int = 2):
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def run_command(main: Callable, *, prog: str, module: str, doc: str, flag_names: Sequence[str],
                interrupted: str = "") -> None:
    """Run `main(argv)` as command `module` (`python -m <module>`); errors are prefixed `<prog>: error:`.

    doc: the command's help text (its module docstring); flag_names: the flags it defines, listed by `--help`;
    interrupted: what to print on Ctrl-C (e.g. how to resume)."""
    if any(a in HELP_ARGS or a.startswith("--help=") for a in sys.argv[1:]):
        print(help_text(f"python -m {module}", doc, flag_names))
        sys.exit(0)

    app.run(lambda argv: guarded(main, argv, prog=prog, interrupted=interrupted),
            flags_parser=lambda argv: parse_flags(argv, prog))


def guarded(main: Callable, *args, prog: str, interrupted: str = ""):
    """`main(*args)` with a KdjaxError printed as one line (exit 2) and Ctrl-C as one line (exit 130); for commands
    that parse their own arguments (argparse) as well as for `run_command`."""
    from kdjax.errors import KdjaxError

    try:
        return main(*args)
    except KdjaxError as e:
        fail(prog, str(e))
    except OSError as e:  # what is saved is said where it is known (train.run); here: the path and the reason
        from kdjax.runtime.oserrors import describe

        fail(prog, describe(e))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted" + (f"; {interrupted}" if interrupted else ""), file=sys.stderr, flush=True)
        sys.exit(130)
