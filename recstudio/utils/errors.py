"""Exception types raised by RecStudio.

Every error says what was wrong, where, and what to do instead. They derive from
``ValueError`` (or ``OSError`` for I/O) so generic handlers keep working.
"""


class RecStudioError(Exception):
    """Base class of every error RecStudio raises on purpose."""


class ConfigError(RecStudioError, ValueError):
    """A configuration key or value is unknown or has the wrong type."""


class DataError(RecStudioError, ValueError):
    """Input data is malformed, or a processing step left nothing to work with."""


class DatasetNotFoundError(RecStudioError, KeyError):
    """A dataset name is not in the registry."""

    def __str__(self):  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class DownloadError(RecStudioError, OSError):
    """A download failed, or the downloaded file failed its checksum."""
