"""The log chain's routing of third-party loggers."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from trt.config import LogFormat
from trt.logs import configure_logging


@pytest.fixture
def json_logs() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)


def test_aiogram_per_update_line_is_left_to_dispatch_ok(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # aiogram writes «Update id=… is handled. Duration …» for every update; DISPATCH_OK
    # carries the same with the cid, so the line would only cost a JSON line per update.
    configure_logging(LogFormat.JSON, "INFO")
    events = logging.getLogger("aiogram.event")
    events.info("Update id=%s is handled. Duration %d ms by bot id=%d", 1, 2, 3)
    events.warning("Something aiogram warns about")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["event"] for line in lines] == ["Something aiogram warns about"]
