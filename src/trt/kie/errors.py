"""Every KIE answer code and transport failure, mapped once to one exception class.

`retryable`: the job worker may try again (with backoff). `refundable`: when the job gives up on
this error, the user's hold is released. What the user reads is in the locales
(`kie_reasons.<code>`, rendered in bot/). The one table `ERRORS` decides both
(shared/kie/README.md §3).
"""

from __future__ import annotations

from dataclasses import dataclass

from trt.errors import TrtError


@dataclass(frozen=True, slots=True)
class ErrorKind:
    code: str
    retryable: bool
    refundable: bool
    operator_alert: bool = False


ERRORS: dict[str, ErrorKind] = {
    "401": ErrorKind("401", False, True, operator_alert=True),
    "402": ErrorKind("402", False, True, operator_alert=True),
    "404": ErrorKind("404", False, True),
    "422": ErrorKind("422", False, True),
    "429": ErrorKind("429", True, True),
    "433": ErrorKind("433", False, True, operator_alert=True),
    "455": ErrorKind("455", True, True),
    "500": ErrorKind("500", True, True),
    "501": ErrorKind("501", False, True),
    "505": ErrorKind("505", False, True, operator_alert=True),
    "400": ErrorKind("400", False, True),
    "408": ErrorKind("408", False, True),
    "413": ErrorKind("413", False, True),
    "451": ErrorKind("451", False, True),
    "timeout": ErrorKind("timeout", True, True),
    "network": ErrorKind("network", True, True),
    "malformed": ErrorKind("malformed", True, True),
    "deadline": ErrorKind("deadline", False, True),
    "input": ErrorKind("input", False, True),
    "input_format": ErrorKind("input_format", False, True),
    "input_video": ErrorKind("input_video", False, True),
    "input_audio": ErrorKind("input_audio", False, True),
    "unconfirmed": ErrorKind("unconfirmed", False, True),
    "download": ErrorKind("download", False, True),
}
UNKNOWN = ErrorKind("unknown", False, True)


def kind_of(code: int | str) -> ErrorKind:
    return ERRORS.get(str(code), UNKNOWN)


class KieError(TrtError):
    """A failed KIE call; `kind` says whether to retry and whether to refund."""

    def __init__(
        self,
        code: int | str,
        message: str,
        *,
        retry_after_s: float | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        self.kind = kind_of(code)
        self.code = str(code)
        self.message = message
        self.retry_after_s = retry_after_s
        # A create whose answer was lost may still have made a task (README §3.1).
        self.outcome_unknown = outcome_unknown
        super().__init__(f"KIE {self.code}: {message}")

    @property
    def retryable(self) -> bool:
        return self.kind.retryable

    @property
    def refundable(self) -> bool:
        return self.kind.refundable
