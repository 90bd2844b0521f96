"""Errors that map to the Contract's exit statuses, and the one way messages quote user input.

How a command's end becomes its exit status, and the stop signals (Ctrl-C, SIGTERM) that end it: ``sim.command``.
"""

from __future__ import annotations

import datetime
import logging
import sys
import unicodedata

QUOTE_LIMIT = 100  # characters of user input a message may echo (Contract: at most ~100)


class InputError(Exception):
    """Bad usage or bad input: a file, row or key the user can fix. Exit status 2."""


class ConfigError(InputError):
    """A config key, value or overlay is invalid; the message names the dotted path."""


class UnreadSetting(ConfigError):
    """A setting the loaded workload leaves unread (the run would be the same with ``neutral``), found as the run
    loads it. A lone run refuses it; a sweep's point runs with ``neutral`` instead once another point is known to read
    it, and the sweep refuses one no point reads (``experiments.sweep.run_reading_points``), as a key some points read
    and others do not is kept before the points run (``experiments.execute.refuse_unread``); a plan's candidate runs
    with ``neutral`` (``experiments.runner.run_task``)."""

    def __init__(self, message: str, key: str, neutral: object):
        super().__init__(message)
        self.key, self.neutral = key, neutral


class TraceError(InputError):
    """A trace file cannot be read or a row is invalid in strict mode; names file and row."""


class ReaderGone(Exception):
    """The reader of an output written in place (``--report-json /dev/stdout | head -c 100``, a FIFO) went away
    mid-write: not bad input, but the end of a process that SIGPIPE ended (status 141, no message)."""

def one_line(message: str) -> str:
    """``message`` with its control characters escaped as Python writes them (``\\n``, ``\\x1b``), and the Unicode
    line and paragraph separators: an error is one line, however a path it names was spelt (a file name holding a
    newline split the message in two; an escape sequence in one reached the terminal). Printable text, non-ASCII
    included, is left as it is."""
    if message.isprintable():  # (the common case)
        return message
    return "".join(c.encode("unicode_escape").decode("ascii") if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c
                   for c in message)


class OneLineNotes(logging.Handler):
    """kvsim's notes (``kvsim: note: ...``, logged under the "kvsim" logger) on standard error, each one line as
    errors are (``one_line``): a note naming a path with a newline split in two, an escape sequence in one reached the
    terminal. It writes where Python's last resort would have (the message alone, at WARNING and above, to the
    standard error of the moment), and only where that would: a program or a test that handles the record itself
    (a handler of its own on the way to the root) formats it as it chooses."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:  # (Logger.callHandlers' walk: where another handler takes it, it is theirs)
            if any(handler is not self for handler in logger.handlers):
                return
            logger = logger.parent if logger.propagate else None
        try:
            sys.stderr.write(one_line(record.getMessage()) + "\n")
            sys.stderr.flush()
        except Exception:  # (as logging's own handlers: a note that cannot be written never ends the run)
            self.handleError(record)


def notes_one_line() -> None:
    """Install ``OneLineNotes`` on the "kvsim" logger, once a process (a command run again in it finds it there)."""
    logger = logging.getLogger("kvsim")
    if not any(isinstance(handler, OneLineNotes) for handler in logger.handlers):
        logger.addHandler(OneLineNotes())


def lines_escaped(text: str) -> str:
    """``text`` (a summary on standard output) with each line's control characters escaped (``one_line``): a path
    or a name it echoes neither splits its line nor reaches the terminal as an escape sequence."""
    return "\n".join(one_line(line) for line in text.split("\n"))


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr`` of user input for an error message, cut to ``limit`` characters.

    Every message that echoes input (a header line, a value, a record) goes through here,
    so a 200 MB line or a binary blob never floods the terminal.
    """
    if isinstance(value, (str, bytes, bytearray)):
        size, unit = len(value), "characters" if isinstance(value, str) else "bytes"
        text = repr(value[: limit + 1])  # never repr the whole of a huge input
    elif isinstance(value, datetime.date):  # only YAML makes one: an unquoted 2024-01-01 (not datetime.date(2024, ...))
        return yaml_date(value)
    else:
        text = repr(value)
        size, unit = len(text), "characters"
    inside = date_inside(value)  # ([2024-01-01]: the list's repr shows the text, this says what YAML made of it)
    said = ""
    if inside is not None:
        written = _written(inside)
        said = f" (YAML read {written} as a date; quote it where text is meant: '{written}')"
    if len(text) <= limit:
        return text + said
    return f"{text[:limit]}... ({size:,} {unit}){said}"


def date_inside(value: object, depth: int = 0) -> datetime.date | None:
    """The first date in a list or mapping YAML read (a few levels deep), or None."""
    if isinstance(value, datetime.date):
        return value
    if depth > 4 or not isinstance(value, (list, tuple, dict)):
        return None
    items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
    return next((found for item in items[:1000] if (found := date_inside(item, depth + 1)) is not None), None)


# YAML 1.1 (PyYAML) reads an unquoted yes/no/on/off (any case) as a boolean, as it does true/false
YAML_BOOLEAN_WORDS = "yes/no/on/off"


def quote_yaml(value: object) -> str:
    """``quote(value)``, where a boolean says that YAML made it one. Where a word is meant (``cache.admission: no``, a
    sweep axis ``[none, no]``, a GPU spec's ``link.kind: yes``), YAML 1.1 has already turned it into False and the
    spelling is gone (yes, Yes, on and true all read True), so the message explains rather than guessing the word. (A
    date YAML read from unquoted text is explained by ``quote`` itself: ``yaml_date``.)"""
    if isinstance(value, bool):
        return (f"{str(value).lower()}, a boolean (YAML reads an unquoted {YAML_BOOLEAN_WORDS} or true/false as one; "
                f"quote it where a word is meant: '{'yes' if value else 'no'}')")
    return quote(value)


def _written(value: datetime.date) -> str:
    """A date or timestamp as YAML read it from unquoted text: the text itself (``sim.config_yaml.WrittenDate`` keeps
    it), else its ISO form; cut to ``QUOTE_LIMIT``."""
    written = getattr(value, "written", None) or (str(value) if isinstance(value, datetime.datetime)
                                                  else value.isoformat())
    return written[:QUOTE_LIMIT]


def yaml_date(value: datetime.date) -> str:
    """A date or timestamp YAML read from unquoted text, quoted as it was written and said to be YAML's reading,
    with the fix (not Python's ``datetime.date(2024, 1, 1)``)."""
    written = _written(value)
    return f"{written}, a date (YAML reads an unquoted date or timestamp as one; quote it where text is meant: '{written}')"
