"""Every KIE answer code and transport failure, mapped once to one exception class.

`retryable`: the job worker may try again (with backoff). `refundable`: when the job gives up on
this error, the user's hold is released. The user-facing reason is in both languages. The one
table `ERRORS` decides all three (shared/kie/README.md §3).
"""

from __future__ import annotations

from dataclasses import dataclass

from trt.errors import TrtError


@dataclass(frozen=True, slots=True)
class ErrorKind:
    code: str
    retryable: bool
    refundable: bool
    reason_ru: str
    reason_en: str
    operator_alert: bool = False


_TEMPORARY_RU = "сервис генерации временно недоступен"
_TEMPORARY_EN = "the generation service is temporarily unavailable"

ERRORS: dict[str, ErrorKind] = {
    "401": ErrorKind("401", False, True, _TEMPORARY_RU, _TEMPORARY_EN, operator_alert=True),
    "402": ErrorKind("402", False, True, _TEMPORARY_RU, _TEMPORARY_EN, operator_alert=True),
    "404": ErrorKind(
        "404", False, True, "задача не найдена у провайдера", "the provider lost the task"
    ),
    "422": ErrorKind(
        "422",
        False,
        True,
        "провайдер отклонил параметры запроса",
        "the provider rejected the request's parameters",
    ),
    "429": ErrorKind(
        "429", True, True, "слишком много запросов, повторяем", "too many requests, retrying"
    ),
    "433": ErrorKind("433", False, True, _TEMPORARY_RU, _TEMPORARY_EN, operator_alert=True),
    "455": ErrorKind(
        "455",
        True,
        True,
        "у провайдера техническое обслуживание",
        "the provider is under maintenance",
    ),
    "500": ErrorKind(
        "500", True, True, "ошибка на стороне провайдера", "an error on the provider's side"
    ),
    "501": ErrorKind("501", False, True, "генерация не удалась", "the generation failed"),
    "505": ErrorKind(
        "505",
        False,
        True,
        "модель временно отключена",
        "the model is temporarily switched off",
        operator_alert=True,
    ),
    "400": ErrorKind(
        "400",
        False,
        True,
        "запрос отклонён правилами контента — измените описание или фото",
        "refused by the content policy — change the prompt or the photo",
    ),
    "408": ErrorKind(
        "408",
        False,
        True,
        "провайдер не успел сгенерировать результат",
        "the provider produced no result in time",
    ),
    "413": ErrorKind(
        "413",
        False,
        True,
        "загруженный файл совпадает с существующей работой",
        "the uploaded file matches an existing work",
    ),
    "451": ErrorKind(
        "451",
        False,
        True,
        "провайдер не смог скачать загруженный файл",
        "the provider could not download the uploaded file",
    ),
    "timeout": ErrorKind(
        "timeout", True, True, "провайдер не ответил вовремя", "the provider did not answer in time"
    ),
    "network": ErrorKind("network", True, True, _TEMPORARY_RU, _TEMPORARY_EN),
    "malformed": ErrorKind(
        "malformed",
        True,
        True,
        "непонятный ответ провайдера",
        "an unreadable answer from the provider",
    ),
    "deadline": ErrorKind(
        "deadline",
        False,
        True,
        "генерация заняла слишком много времени",
        "the generation took too long",
    ),
    "input": ErrorKind(
        "input",
        False,
        True,
        "не удалось получить ваш файл из Telegram",
        "your file could not be fetched from Telegram",
    ),
    "input_format": ErrorKind(
        "input_format",
        False,
        True,
        "присланный файл не является изображением",
        "the file you sent is not an image",
    ),
    "input_video": ErrorKind(
        "input_video",
        False,
        True,
        "присланный файл не является видео",
        "the file you sent is not a video",
    ),
    "input_audio": ErrorKind(
        "input_audio",
        False,
        True,
        "присланный файл не является аудио",
        "the file you sent is not audio",
    ),
    "unconfirmed": ErrorKind(
        "unconfirmed",
        False,
        True,
        "сервис генерации не подтвердил задачу",
        "the generation service did not confirm the task",
    ),
    "download": ErrorKind(
        "download",
        False,
        True,
        "не удалось скачать результат",
        "the result could not be downloaded",
    ),
}
UNKNOWN = ErrorKind(
    "unknown", False, True, "неизвестная ошибка провайдера", "an unknown error from the provider"
)


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

    def reason(self, lang: str) -> str:
        return self.kind.reason_en if lang == "en" else self.kind.reason_ru
