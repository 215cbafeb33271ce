"""The errors selfsup raises for bad input; each message names the problem and the fix."""


class SelfSupError(Exception):
    """Base class: stages print these as one clear line instead of a stack trace."""


class ConfigError(SelfSupError, ValueError):
    """A parameter is unknown, of the wrong type, or out of range."""


class DataError(SelfSupError):
    """A dataset or prepared file is missing, corrupt, or inconsistent."""


class TrainingError(SelfSupError):
    """Training cannot go on (e.g. the loss became NaN)."""


class OutputError(SelfSupError):
    """An output cannot be written (e.g. its folder is read-only)."""


class TrackingError(SelfSupError):
    """The MLflow tracking server cannot be reached."""
