"""Exceptions whose message is one line a user can act on."""


class UteError(Exception):
    """Base of every error UTE reports to a user; str(error) is the one line shown."""


class ProbeError(UteError):
    """The source cannot be read as a complete video (it may still be arriving)."""


class NotMediaError(ProbeError):
    """The file is no audio or video file at all, and no start of one: waiting will not help."""


class NoVideoError(ProbeError):
    """A whole media file without a video stream (audio only, subtitles): waiting will not help."""


class CommandError(UteError):
    """A subprocess (ffmpeg, redis-server) failed."""


class EncodeError(UteError):
    """A chunk or a whole file could not be encoded."""


class VerifyError(UteError):
    """An output did not match its source; it is never kept."""


class SettingsError(UteError):
    """A setting has a value UTE cannot use."""


class StoppedError(UteError):
    """A stop signal ended the command before its work was done; running it again resumes."""
