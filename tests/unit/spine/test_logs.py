"""Log lines carry level, role and logger; JSON mode emits one parseable object per line."""

from __future__ import annotations

import io
import json
import logging

import pytest

from netspectra.config.models import LoggingConfig
from netspectra.logs import configure_logging, current_role


@pytest.fixture(autouse=True)
def _restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_the_role_of_the_running_task():
    stream = io.StringIO()
    configure_logging(LoggingConfig(level="info", format="json"), stream=stream)
    token = current_role.set("engine")
    try:
        logging.getLogger("netspectra.test").info("Started engine: %d exact tasks", 6)
        logging.getLogger("netspectra.test").debug("hidden at INFO")
    finally:
        current_role.reset(token)
    [line] = stream.getvalue().splitlines()
    document = json.loads(line)
    assert (document["level"], document["role"], document["logger"], document["message"]) == (
        "INFO",
        "engine",
        "netspectra.test",
        "Started engine: 6 exact tasks",
    )


def test_text_lines_show_level_role_and_logger():
    stream = io.StringIO()
    configure_logging(LoggingConfig(level="DEBUG", format="text"), stream=stream)
    logging.getLogger("netspectra.test").warning("slow consumer: %d dropped", 3)
    assert stream.getvalue().rstrip().endswith("WARNING [-] netspectra.test: slow consumer: 3 dropped")
