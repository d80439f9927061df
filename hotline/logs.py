"""Structured logging: one line per event, with the call id of the call it is about.

The call id lives in a context variable, so every log line written while a
call's task runs carries it without being passed around.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

call_id_var: ContextVar[str | None] = ContextVar("call_id", default=None)

# Attributes every LogRecord has; anything else was passed with `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        call_id = call_id_var.get()
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
        call_id = call_id_var.get()
        prefix = f"[{call_id}] " if call_id else ""
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        tail = " " + " ".join(f"{k}={v}" for k, v in extra.items()) if extra else ""
        line = f"{record.levelname.lower():7} {record.name}: {prefix}{record.getMessage()}{tail}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # panoramisk logs every AMI line at DEBUG/INFO; keep it at warnings.
    logging.getLogger("panoramisk").setLevel(max(logging.WARNING, root.level))
