"""Errors that map to the Contract's exit statuses."""


class InputError(Exception):
    """Bad usage or bad input: a file, row or key the user can fix. Exit status 2."""


class ConfigError(InputError):
    """A config key, value or overlay is invalid; the message names the dotted path."""


class TraceError(InputError):
    """A trace file cannot be read or a row is invalid in strict mode; names file and row."""
