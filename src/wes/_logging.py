"""Structured logs: one line per record, as JSON objects or as key=value text.

`configure_logging` puts a handler on the `wes` logger hierarchy (and any other loggers asked
for, such as uvicorn's). A record's fields are its time, level, logger and message, then the
fields a `LoggingStats` event carries (`kind`, `name`, `ident`, `seconds`, `error`,
`error_message`) and any other `extra=` fields, then `traceback` when there is one.
"""

from __future__ import annotations

import datetime
import json as _json
import logging
import re
import sys
from collections.abc import Iterable
from typing import IO, Any

# The attributes every LogRecord has; anything else on a record came from `extra=`.
# (uvicorn adds `color_message`, an ANSI-coloured copy of the message: not a field.)
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
_BARE = re.compile(r"[^\s\"=\\]+")  # a text value that needs no quotes


class StructuredFormatter(logging.Formatter):
    """Formats a record as one line: a JSON object, or key=value pairs (logfmt).

    Args:
        json: JSON objects if true, else key=value text.
    """

    def __init__(self, json: bool = False) -> None:
        super().__init__()
        self.json = json

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        """The record as an ordered dict of fields, `None` values left out."""
        ts = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        out: dict[str, Any] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key == "wes" and isinstance(value, dict):
                out.update((k, v) for k, v in value.items() if v is not None)
            elif key not in _STANDARD and value is not None:
                out.setdefault(key, value)
        if record.exc_info and record.exc_info[1] is not None:
            out["traceback"] = self.formatException(record.exc_info).rstrip()
        elif record.exc_text:
            out["traceback"] = record.exc_text.rstrip()
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info).rstrip()
        return out

    def format(self, record: logging.LogRecord) -> str:
        fields = self.fields(record)
        if self.json:
            return _json.dumps(fields, default=repr, ensure_ascii=False)
        return " ".join(f"{key}={_text(key, value)}" for key, value in fields.items())


def _text(key: str, value: Any) -> str:
    if key == "ident" and isinstance(value, tuple) and len(value) == 2:
        value = f"{value[0]}/{value[1]}"
    elif isinstance(value, float):
        value = f"{value:.6g}"
    text = value if isinstance(value, str) else str(value)
    if _BARE.fullmatch(text):
        return text
    # Quoted with JSON's escapes, so a traceback stays on the record's one line.
    return _json.dumps(text, ensure_ascii=False)


def configure_logging(
    level: int | str = "INFO",
    json: bool = False,
    stream: IO[str] | None = None,
    *,
    loggers: Iterable[str] = ("wes",),
) -> logging.Handler:
    """Log the `wes` logger hierarchy one line per record, to `stream` (default stderr).

    Calling it again replaces the handler it installed before. The loggers stop
    propagating to the root logger, so a record is not written twice.

    Args:
        level: the lowest level logged, such as `"INFO"` or `logging.DEBUG`. `LoggingStats`
            logs routine events at DEBUG and failures at WARNING or ERROR.
        json: one JSON object per line if true, else key=value text.
        stream: where to write; default `sys.stderr` at the time of the call.
        loggers: the loggers to configure, such as `("wes", "uvicorn")`.

    Returns:
        The handler installed, to remove it or change its level.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(StructuredFormatter(json=json))
    handler._wes_installed = True  # type: ignore[attr-defined] # found and replaced next call
    if isinstance(level, str):
        level = level.upper()
    for name in loggers:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "_wes_installed", False)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    return handler
