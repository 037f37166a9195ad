"""Structured logging: every line carries level, role and logger, as text or one JSON object.

The role comes from a context variable the supervisor sets in each role's task, so library
code just uses ``logging.getLogger(__name__)`` and never passes the role around.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

from netspectra.config.models import LoggingConfig

#: The role whose task is running ("-" outside any role); set by the supervisor.
current_role: contextvars.ContextVar[str] = contextvars.ContextVar("netspectra_role", default="-")


class _RoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.role = current_role.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "role": getattr(record, "role", "-"),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            document["traceback"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)-7s [%(role)s] %(name)s: %(message)s"


def configure_logging(config: LoggingConfig, *, stream: object = None) -> None:
    """Install one handler on the root logger (replacing earlier ones) at the configured level."""
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.addFilter(_RoleFilter())
    if config.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.level)
    # Third-party chatter at INFO (connection pools, HTTP/2 frames) drowns our lifecycle lines.
    for noisy in ("asyncio", "hpack", "h2", "grpclib", "numba", "asynch", "nats"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
