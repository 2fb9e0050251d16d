"""The one exception type users see for bad input.

The CLI catches :class:`Im2HandsError`, prints its message on one line and exits with a
non-zero code. Library code raises it for anything the user can fix (a missing file, a
malformed JSON, an unknown config key, an out-of-range option), naming the thing.
"""


class Im2HandsError(Exception):
    """Bad input that the user can fix; the message names the file, key or option."""


class ConfigError(Im2HandsError):
    """An invalid config file, key, type or override."""


class DataError(Im2HandsError):
    """A missing or corrupted dataset item or input file."""


class HandModelError(Im2HandsError):
    """A missing or invalid hand-model (MANO-format) file or folder."""
