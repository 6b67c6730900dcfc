"""User-facing errors: the CLI prints these as one line and exits with code 2."""


class ScplError(Exception):
    """A problem the user can fix (bad input, bad config, missing data); never a bug."""


class ConfigError(ScplError, ValueError):
    """A configuration value is invalid; the message says which and how to fix it."""


class DataError(ScplError):
    """A data file is missing, truncated, corrupt or fails its checksum."""
