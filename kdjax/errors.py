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
