"""Structured logging: JSON lines for machines, readable console lines for people.

Everything that logs (TRT, aiogram, SQLAlchemy, Alembic, aiohttp) goes through structlog's
processor chain, so every line has the same shape, carries the context variables bound for the
current update (the `cid`) and has secrets scrubbed before it leaves the process.

TRT's own lines (several per update: the event chain) are rendered by structlog and written
straight to stderr, without a detour through a `logging.LogRecord` and a handler; the standard
library's loggers (aiogram, SQLAlchemy, …) reach the same renderer through a
`ProcessorFormatter` on the root logger.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

import structlog

from trt.config import LogFormat

_REDACTED = "[REDACTED]"
_secrets: tuple[str, ...] = ()
_line_forms: tuple[str, ...] = ()  # the secrets as a rendered line holds them
_info_chain: list[Any] | None = None  # the configured processors, for `log_info` (INFO on)


def resolve_format(configured: LogFormat | None, *, command: str) -> LogFormat:
    """JSON under `trt run` unless configured otherwise; console when a person watches."""
    if configured is not None:
        return configured
    if command == "run" or not sys.stderr.isatty():
        return LogFormat.JSON
    return LogFormat.CONSOLE


def scrub(text: str) -> str:
    """`text` with every known secret replaced (for anything stored or shown that may hold
    an exception's text or a URL: logs, events, job errors)."""
    return _redact(text, _secrets)


def _redact(text: str, forms: tuple[str, ...]) -> str:
    for form in forms:  # longest first: a secret inside a longer one is not half-replaced
        if form in text:
            text = text.replace(form, _REDACTED)
    return text


def _scrub_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # Secrets can reach a log line inside URLs or exception texts (a Bot API URL holds the
    # token); replacing known values is cheap and catches every such path.
    if not _secrets:
        return event_dict
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = scrub(value)
    return event_dict


def _scrub_rendered(_logger: Any, _method: str, line: Any) -> Any:
    # The last word: whatever a nested value, a traceback or a third-party message carried
    # into the rendered line, no secret leaves the process. A JSON line holds a secret as
    # the string escapes it (escaping is per character, so the escaped secret is a part of
    # the escaped text): both forms are looked for.
    return _redact(line, _line_forms) if isinstance(line, str) else line


def configure_logging(fmt: LogFormat, level: str, secrets: Iterable[str] = ()) -> None:
    """Route structlog and the standard library through one chain; idempotent."""
    global _secrets, _line_forms, _info_chain
    # Short values would redact ordinary words; real secrets are long.
    _secrets = tuple(sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True))
    escaped = {json.dumps(s, ensure_ascii=False)[1:-1] for s in _secrets}
    _line_forms = tuple(sorted({*_secrets, *escaped}, key=len, reverse=True))

    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
    ]
    renderer: structlog.types.Processor
    if fmt is LogFormat.JSON:
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
        tail: list[structlog.types.Processor] = [
            # Frame locals would put every argument of every frame in the log: aiogram's
            # request frames hold the Bot API URL with the token.
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            # No `_scrub_secrets` pass over the values: `_scrub_rendered` finds a secret in
            # the JSON line wherever it sits (a nested value too), in either form.
        ]
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
        tail = [_scrub_secrets]

    chain: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _named,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        *tail,
        renderer,
        _scrub_rendered,
    ]
    _info_chain = chain if _level_number(level) <= logging.INFO else None
    structlog.configure(
        processors=chain,
        logger_factory=structlog.WriteLoggerFactory(file=_STDERR),  # type: ignore[arg-type]
        wrapper_class=structlog.make_filtering_bound_logger(_level_number(level)),
        # Loggers bound at import keep this chain; a later call changes the secrets and the
        # level of the standard library's loggers, and where stderr is (see `_Stderr`).
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *tail,
            renderer,
            _scrub_rendered,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Third-party chatter at INFO would drown the event stream; their warnings still show.
    # aiogram.event writes «Update id=… is handled. Duration …» for every update: the
    # DISPATCH_OK event carries the same (and the cid), one line less per update.
    for noisy in (
        "aiohttp.access",
        "sqlalchemy.engine",
        "alembic.runtime.migration",
        "aiogram.event",
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _named(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # `get_logger`'s name under the key the standard library's lines use.
    name = event_dict.pop("logger_name", None)
    if name is not None:
        event_dict["logger"] = name
    return event_dict


def _level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    return logging.getLevelNamesMapping().get(level.upper(), logging.INFO)


class _Stderr:
    """Whatever `sys.stderr` is at the moment of writing (a test's capture replaces it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def log_info(name: str, event: str, fields: Mapping[str, Any]) -> None:
    """`get_logger(name).info(event, **fields)`: the same line through the same processors,
    without structlog's per-call plumbing (a bound logger and a writer built for every call,
    since loggers are not cached: about a third of an event's cost; docs/performance.md,
    item 20). For the lines every update writes several of: the event chain."""
    chain = _info_chain
    if chain is None:  # not configured yet, or INFO is filtered out
        get_logger(name).info(event, **fields)
        return
    line: Any = {"logger_name": name, **fields, "event": event}
    for processor in chain:
        line = processor(None, "info", line)
    _WRITER.msg(line)  # a line of its own, under the lock structlog's writes to stderr take


_STDERR = _Stderr()
_WRITER = structlog.WriteLogger(file=_STDERR)  # type: ignore[arg-type]


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """A logger bound to a module name."""
    # Bound lazily (the chain is the one configured when it first logs); named by `_named`.
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(logger_name=name)
    return logger
