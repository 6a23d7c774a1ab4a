"""Exceptions whose message is one line a user can act on."""


class UteError(Exception):
    """Base of every error UTE reports to a user; str(error) is the one line shown."""


class ProbeError(UteError):
    """The source cannot be read as a complete video."""


class CommandError(UteError):
    """A subprocess (ffmpeg, redis-server) failed."""


class EncodeError(UteError):
    """A chunk or a whole file could not be encoded."""


class VerifyError(UteError):
    """An output did not match its source; it is never kept."""


class SettingsError(UteError):
    """A setting has a value UTE cannot use."""
