"""The log chain: third-party loggers, secret scrubbing, the event lines' writer."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from trt.config import LogFormat
from trt.logs import configure_logging, get_logger, log_info


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


SECRET = 'pa"ss\\word-0123456789'  # a password may hold what JSON escapes


def test_a_secret_is_scrubbed_wherever_a_json_line_holds_it(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(LogFormat.JSON, "INFO", secrets=[SECRET])
    log = get_logger("trt.test")
    log.info("top_level", url=f"postgresql://u:{SECRET}@db/x")
    log.info("nested", request={"headers": [f"Bearer {SECRET}"]})
    try:
        raise RuntimeError(f"connect failed: {SECRET}")
    except RuntimeError:
        log.exception("with_traceback")
    logging.getLogger("aiogram.session").warning("third party: %s", SECRET)
    log_info("trt.events", "EVENT", {"detail": SECRET, "deep": {"x": SECRET}})
    output = capsys.readouterr().err
    lines = [json.loads(line) for line in output.splitlines()]
    assert [line["event"] for line in lines] == [
        "top_level",
        "nested",
        "with_traceback",
        "third party: [REDACTED]",
        "EVENT",
    ]
    assert SECRET not in output
    assert json.dumps(SECRET)[1:-1] not in output
    assert "word-0123456789" not in output
    assert lines[0]["url"] == "postgresql://u:[REDACTED]@db/x"
    assert lines[1]["request"] == {"headers": ["Bearer [REDACTED]"]}
    assert lines[4]["deep"] == {"x": "[REDACTED]"}


def test_an_event_line_is_the_line_structlog_renders(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # `log_info` runs the configured processors without structlog's per-call plumbing: the
    # line must be the one `get_logger(name).info` writes (keys, their order, the context).
    configure_logging(LogFormat.JSON, "INFO", secrets=[SECRET])
    fields = {"cid": "c1", "update_id": 7, "note": f"x{SECRET}", "n": None, "ok": True}
    with structlog.contextvars.bound_contextvars(job_id=3, cid="bound"):
        get_logger("trt.events").info("CALLBACK_RECEIVED", **fields)
        log_info("trt.events", "CALLBACK_RECEIVED", fields)
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first.pop("ts")[:16] == second.pop("ts")[:16]
    assert list(first.items()) == list(second.items())
    assert (first["cid"], first["job_id"], first["logger"]) == ("c1", 3, "trt.events")


def test_event_lines_follow_the_level(json_logs: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LogFormat.JSON, "WARNING")
    log_info("trt.events", "CALLBACK_RECEIVED", {"cid": "c1"})
    assert capsys.readouterr().err == ""
