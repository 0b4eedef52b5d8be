"""User-facing errors: raised before any compute, printed without a traceback by the CLIs."""


class KdjaxError(Exception):
    """Base class for errors whose message is meant for the user as is."""


class ConfigError(KdjaxError):
    """A config field is wrong. `field` is the dotted path a user would override, e.g. `losses.dkd.pairs`."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"config.{field}: {message}" if field else message)


class DataError(KdjaxError):
    """Input data is missing or malformed (names the file and, where known, the line)."""


class CheckpointError(KdjaxError):
    """A checkpoint or export directory cannot be used."""


_CHECK_WORDS = {"loss": "the total loss", "grads": "the gradients",
                "update": "the updated parameters / optimizer state / BatchNorm statistics"}


def nonfinite_message(desc: str, config, losses, first_step: int, bad_steps: int, counts: dict,
                      good_step, directory: str) -> str:
    """Why a run stops on NaN/inf: the first bad step, what went non-finite there (loss terms named by their
    `config.losses.<name>` entry), what was (not) saved, and what to change."""
    fields = {}
    for i, name in enumerate(config.losses):
        for unit in losses.entry_term_names(i):
            for term in unit:
                fields[f"loss/{term}"] = f"losses.{name}"
    counts = {k: int(v) for k, v in dict(counts).items() if int(v)}
    terms = [f"{k} (config.{fields[k]})" if k in fields else k for k in counts if k.startswith("loss/")]
    others = [_CHECK_WORDS[k] for k in ("loss", "grads", "update") if k in counts]
    what = terms + others
    entries = sorted({fields[k] for k in counts if k in fields})
    policy, limit = config.train.nonfinite, int(config.train.max_skipped)
    hint = "lower optim.lr"
    if entries:
        hint = f"check {' / '.join(e + '.weight' for e in entries)} and the inputs of those losses, or " + hint
    return (f"[{desc}] training became non-finite (NaN/inf) at step {first_step}"
            + (f": {', '.join(what)}" if what else "")
            + (f". {bad_steps} step{'s were' if bad_steps != 1 else ' was'} skipped, more than "
               f"train.max_skipped={limit}" if policy == "skip"
               else f" ({bad_steps} such step{'s' if bad_steps != 1 else ''} so far)")
            + ". No update from those steps was applied and no NaN/inf checkpoint was written; last good checkpoint: "
            + (f"step {good_step} in {directory}" if good_step is not None else "none yet")
            + f". To fix it, {hint} and start over with --restart (moves this run aside) or a new --workdir"
            + ("; or resume from that checkpoint dropping such steps: add --config.train.nonfinite=skip "
               "(up to train.max_skipped of them)." if policy != "skip"
               else "; or resume from that checkpoint with a higher --config.train.max_skipped."))
