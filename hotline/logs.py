"""Structured logging: one line per event, with the call id of the call it is about.

The call id lives in a context variable, so every log line written while a
call's task runs carries it without being passed around.

Lines are formatted and written by a thread of their own (``QueueHandler``
and ``QueueListener``): the event loop only queues the record.  A write to
stderr is a system call that blocks while journald or a terminal is slow,
and formatting JSON cost ~0.1 ms of loop time per line, time other calls'
AGI commands waited for.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

call_id_var: ContextVar[str | None] = ContextVar("call_id", default=None)

# Attributes every LogRecord has; anything else was passed with `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _call_id(record: logging.LogRecord) -> str | None:
    """The call id when the record was made (set by the queue handler), else now."""
    if "_call_id" in record.__dict__:
        value: str | None = record.__dict__["_call_id"]
        return value
    return call_id_var.get()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        call_id = _call_id(record)
        if call_id is not None:
            event["call_id"] = call_id
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                event[key] = value
        if record.exc_info:
            event["exc"] = self.formatException(record.exc_info)
        return json.dumps(event, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        call_id = _call_id(record)
        prefix = f"[{call_id}] " if call_id else ""
        extra = {
            k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")
        }
        tail = " " + " ".join(f"{k}={v}" for k, v in extra.items()) if extra else ""
        line = f"{record.levelname.lower():7} {record.name}: {prefix}{record.getMessage()}{tail}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _CallQueueHandler(logging.handlers.QueueHandler):
    """Queues records with what only the logging thread knows: the call id."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # No formatting here (QueueHandler's own prepare formats the message):
        # only what must be read now, in the call's context.
        record._call_id = call_id_var.get()
        record.msg = record.getMessage()
        record.args = None
        return record


_listener: logging.handlers.QueueListener | None = None


def stop_logging() -> None:
    """Write out what is queued and stop the logging thread (also run at exit)."""
    global _listener
    if _listener is not None:
        _listener.stop()
        _listener = None


def setup_logging(level: str = "INFO", fmt: str = "json") -> None:
    global _listener
    stop_logging()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _listener = logging.handlers.QueueListener(records, handler, respect_handler_level=True)
    _listener.start()
    atexit.register(stop_logging)
    root = logging.getLogger()
    root.handlers[:] = [_CallQueueHandler(records)]
    root.setLevel(level)
    # panoramisk logs every AMI line at DEBUG/INFO; keep it at warnings.
    logging.getLogger("panoramisk").setLevel(max(logging.WARNING, root.level))
