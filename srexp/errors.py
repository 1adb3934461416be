"""User-facing errors: each message is one line naming the file or config key and what is wrong.
The commands print them as ``srexp-<cmd>: error: <message>`` and exit with status 2, no traceback."""


class SrexpError(Exception):
    """Base of the errors the commands report as one line."""


class ConfigError(SrexpError, ValueError):
    """A config value that cannot work (names the key and the valid choices)."""
