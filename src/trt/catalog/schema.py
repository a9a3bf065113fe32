"""The shape of the model catalogue (`models.yaml`), validated strictly at load.

Every field is spelled out here with its rule; `extra="forbid"` makes a typo in the YAML a load
error instead of a silently ignored key.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Lang = Literal["ru", "en"]
LANGS: tuple[Lang, ...] = ("ru", "en")
SLUG_PATTERN = r"^[a-z0-9][a-z0-9_]*$"  # length is bounded by the 64-byte callback budget


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Text(Strict):
    """A user-facing text in both languages."""

    ru: Annotated[str, Field(min_length=1)]
    en: Annotated[str, Field(min_length=1)]

    def get(self, lang: str) -> str:
        return self.en if lang == "en" else self.ru


class Category(StrEnum):
    IMAGE = "image"
    EDIT = "edit"
    ENHANCE = "enhance"
    VIDEO = "video"
    AUDIO = "audio"


class Family(StrEnum):
    """How a model is called: KIE's market job API or one of its dedicated APIs."""

    MARKET = "market"
    VEO = "veo"
    SUNO = "suno"
    SUNO_COVER = "suno_cover"  # /api/v1/generate/upload-cover: a user's song re-performed
    SUNO_EXTEND = "suno_extend"  # /api/v1/generate/upload-extend: a song continued

    @property
    def protocol(self) -> Family:
        """The family whose task records and callbacks this one's share (Suno's three
        create endpoints report through one record-info and one callback shape)."""
        return Family.SUNO if self in (Family.SUNO_COVER, Family.SUNO_EXTEND) else self


class OutputKind(StrEnum):
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"


class ParamType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    ARRAY = "array"
    OBJECT = "object"  # only as an array's item type (KIE gives objects no sub-schema)


class Ui(StrEnum):
    """How the bot treats a parameter.

    ask: collected from the user in the flow; option: the default is used and the user may
    change it on the «⚙️ Параметры» screen; hidden: never shown, the catalogue's `value` (or
    `default`) is sent when there is one, nothing otherwise.
    """

    ASK = "ask"
    OPTION = "option"
    HIDDEN = "hidden"


class Role(StrEnum):
    """What a parameter means to the conversation, beyond its type."""

    PROMPT = "prompt"  # the main text the user types; always asked, never defaulted
    TEXT = "text"  # another free text (negative prompt, title, …)
    MEDIA = "media"  # URLs of files the user uploads (images, videos, audio)
    VALUE = "value"  # everything else: enums, numbers, booleans


class MediaKind(StrEnum):
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"


class MediaSpec(Strict):
    """What an upload must be: its kind, size and formats (subtypes of the MIME type, e.g.
    `mp4`, `mpeg`), and for video and audio the length KIE accepts."""

    kind: MediaKind
    max_mb: Annotated[float, Field(gt=0, le=100)] = 10
    formats: tuple[str, ...] = ("jpeg", "png", "webp")
    min_duration_s: Annotated[float, Field(gt=0)] | None = None
    max_duration_s: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _durations(self) -> MediaSpec:
        has_duration = self.min_duration_s is not None or self.max_duration_s is not None
        if has_duration and self.kind is MediaKind.IMAGE:
            raise ValueError("durations apply to video and audio")
        if (
            self.min_duration_s is not None
            and self.max_duration_s is not None
            and self.min_duration_s > self.max_duration_s
        ):
            raise ValueError("min_duration_s is above max_duration_s")
        return self


Scalar = str | int | float | bool


class ModeSpec(Strict):
    """A mode in which a parameter is used: the values of other parameters that select it
    (`when`, each a value or a list of values) and what the parameter must be there.

    A parameter with modes is asked and sent only in one of them (Veo's frames only for
    `generationType: FIRST_AND_LAST_FRAMES_2_VIDEO`); `required`, `min_items`, `max_items`
    and `max_length` set the parameter's rule for that mode (within KIE's own).
    """

    when: dict[str, Scalar | tuple[Scalar, ...]]
    label: Text | None = None  # what the parameter is called in this mode («Кадры»)
    required: bool | None = None
    min_items: Annotated[int, Field(ge=0)] | None = None
    max_items: Annotated[int, Field(ge=1)] | None = None
    max_length: Annotated[int, Field(ge=1)] | None = None

    def matches(self, params: dict[str, Any]) -> bool:
        for name, wanted in self.when.items():
            allowed = wanted if isinstance(wanted, tuple) else (wanted,)
            if name not in params or params[name] not in allowed:
                return False
        return True


class ParamSpec(Strict):
    """One KIE input parameter, its constraints (copied from KIE's schema) and its UI."""

    type: ParamType
    required: bool = False
    enum: tuple[Scalar, ...] | None = None
    default: Any = None
    value: Any = None  # TRT always sends this (a deliberate choice, e.g. nsfw_checker: true)
    minimum: float | None = None
    maximum: float | None = None
    min_length: Annotated[int, Field(ge=0)] | None = None
    max_length: Annotated[int, Field(ge=1)] | None = None
    min_items: Annotated[int, Field(ge=0)] | None = None
    max_items: Annotated[int, Field(ge=1)] | None = None
    item_type: ParamType | None = None  # element type of arrays
    ui: Ui = Ui.OPTION
    role: Role = Role.VALUE
    media: MediaSpec | None = None
    label: Text | None = None  # overrides the shared label of this parameter name
    unit: Text | None = None  # appended to values in texts, e.g. «с»
    values: dict[str, Text] | None = None  # labels of enum values, by str(value)
    choices: tuple[int | float, ...] | None = None  # buttons offered for a free number
    modes: tuple[ModeSpec, ...] = ()  # used only in these modes (see ModeSpec)
    # Enum values KIE's schema lists that TRT does not offer (a mode this model lacks per
    # KIE's description, an adult mode): never shown, refused if sent.
    not_offered: tuple[Scalar, ...] = ()
    # Asked as required though KIE's schema calls it optional (the first frame of a
    # frames-to-video model): `required` stays KIE's flag, so the drift check stays exact.
    needed: bool = False

    @field_validator("values", mode="before")
    @classmethod
    def _value_keys_as_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {_table_key_part(k): v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _shape(self) -> ParamSpec:
        if self.role is Role.MEDIA and self.media is None:
            raise ValueError("role media needs a `media` block (kind, max_mb, formats)")
        if self.media is not None and self.role is not Role.MEDIA:
            raise ValueError("`media` is only for role: media")
        if self.type is ParamType.ARRAY and self.item_type is None:
            raise ValueError("arrays need `item_type`")
        if self.type is not ParamType.ARRAY and (
            self.min_items is not None or self.max_items is not None
        ):
            raise ValueError("min_items / max_items apply to arrays only")
        if self.role is Role.PROMPT and (
            self.ui is not Ui.ASK or self.type is not ParamType.STRING
        ):
            raise ValueError("the prompt is a string with ui: ask")
        if self.choices is not None and self.type not in (ParamType.INTEGER, ParamType.NUMBER):
            raise ValueError("`choices` are button presets for numbers")
        if self.not_offered and (self.enum is None or not set(self.not_offered) < set(self.enum)):
            raise ValueError("`not_offered` names some (not all) of the enum's values")
        return self

    @property
    def offered(self) -> tuple[Scalar, ...] | None:
        """The enum values TRT offers (all of KIE's but `not_offered`)."""
        if self.enum is None:
            return None
        return tuple(v for v in self.enum if v not in self.not_offered)

    @property
    def must(self) -> bool:
        """Whether a value must be given: KIE's flag, or TRT's `needed`."""
        return self.required or self.needed

    @property
    def is_media(self) -> bool:
        return self.role is Role.MEDIA

    def in_mode(self, params: dict[str, Any]) -> ParamSpec | None:
        """This parameter as the chosen mode uses it, or None when the mode does not use it."""
        if not self.modes:
            return self
        for mode in self.modes:
            if mode.matches(params):
                update = {
                    key: getattr(mode, key)
                    for key in ("label", "required", "min_items", "max_items", "max_length")
                    if getattr(mode, key) is not None
                }
                return self.model_copy(update=update) if update else self
        return None

    @property
    def effective_default(self) -> Any:
        """What TRT sends when the user gave nothing: the fixed value, else the default."""
        return self.value if self.value is not None else self.default


class PriceSpec(Strict):
    """Price rule in KIE credits (1 credit = $0.005).

    credits: fixed per run; or `by` + `table`: credits looked up by the values of enum/boolean
    parameters (keys joined with "|", booleans as true/false). Then multiplied by each numeric
    parameter in `multiply_by` (seconds of duration, number of outputs, …) and by the length
    of `per_1000_chars` in thousands of characters.
    """

    credits: Decimal | None = Field(default=None, ge=0)
    by: tuple[str, ...] = ()
    table: dict[str, Decimal] | None = None
    multiply_by: tuple[str, ...] = ()
    per_1000_chars: str | None = None
    note: str | None = None  # where the figures come from, for the humans who edit them

    @field_validator("table", mode="before")
    @classmethod
    def _keys_as_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {_table_key_part(k): v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _one_base(self) -> PriceSpec:
        if (self.credits is None) == (self.table is None):
            raise ValueError("give either `credits` or `by` + `table`")
        if (self.table is None) != (not self.by):
            raise ValueError("`by` and `table` go together")
        if self.table is not None and any(v < 0 for v in self.table.values()):
            raise ValueError("table prices must be ≥ 0")
        return self


def _table_key_part(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def table_key(values: list[Any]) -> str:
    """The `table` key of a combination of parameter values."""
    return "|".join(_table_key_part(v) for v in values)


class Incompatible(Strict):
    """A combination of values KIE refuses (e.g. 10 s at 1080P)."""

    when: dict[str, Scalar]


class ModelSpec(Strict):
    slug: Annotated[str, Field(pattern=SLUG_PATTERN, max_length=64)]
    kie_id: Annotated[str, Field(min_length=1)]
    family: Family = Family.MARKET
    category: Category
    title: Text
    description: Text
    output: OutputKind
    typical_duration_s: Annotated[int, Field(ge=1, le=3600)]
    enabled: bool = True
    free: bool = False
    # The provider documents prompts in English (or Chinese) only: a prompt with Cyrillic is
    # offered a translation by the prompt assistant before anything is charged.
    english_prompt: bool = False
    price: PriceSpec
    params: dict[str, ParamSpec]
    incompatible: tuple[Incompatible, ...] = ()

    @property
    def prompt_param(self) -> str | None:
        return next((n for n, p in self.params.items() if p.role is Role.PROMPT), None)


class FollowUp(Strict):
    """A one-tap next step under a result: another model that takes the result as its input
    (⬆️ Улучшить, ✂️ Убрать фон, 🎬 Оживить, 🎵 Продлить), then a normal priced confirmation."""

    label: Text
    model: str  # the slug of the model that takes the result
    param: str  # its upload parameter the result fills
    after: tuple[OutputKind, ...]  # under results of these kinds
    only: tuple[str, ...] = ()  # under results of these models only (slugs), if given


class SkippedModel(Strict):
    """A vendor model deliberately not offered; the drift check ignores it."""

    id: str
    reason: str


class CatalogFile(Strict):
    version: Literal[1]
    provenance: str
    labels: dict[str, Text]
    value_labels: dict[str, dict[str, Text]] = {}
    skipped_vendor_models: tuple[SkippedModel, ...] = ()
    follow_ups: tuple[FollowUp, ...] = ()
    models: tuple[ModelSpec, ...]

    @field_validator("value_labels", mode="before")
    @classmethod
    def _value_keys_as_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                name: {_table_key_part(k): v for k, v in labels.items()}
                if isinstance(labels, dict)
                else labels
                for name, labels in value.items()
            }
        return value
