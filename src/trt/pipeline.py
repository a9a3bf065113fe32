"""The unified model pipeline: a user's choices → a validated, priced KIE request.

resolve → schema → defaults → validate → price → payload → confirmation text. Nothing here
knows any particular model: everything is read from the catalogue, so adding a model is an edit
of `catalog/models.yaml`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field, replace
from typing import Any

from trt.catalog import rules
from trt.catalog.knobs import Knobs
from trt.catalog.loader import Catalog
from trt.catalog.pricing import PricingError, Quote, Rates, format_money, quote
from trt.catalog.rules import media_duration, media_items, telegram_reference
from trt.catalog.schema import (
    Category,
    Family,
    MediaSpec,
    ModelSpec,
    ParamSpec,
    ParamType,
    Role,
    Ui,
)
from trt.errors import TrtError
from trt.i18n import join_choices, plural, t

CATEGORY_ICONS = {
    Category.IMAGE: "🎨",
    Category.EDIT: "🖌",
    Category.ENHANCE: "✨",
    Category.VIDEO: "🎬",
    Category.AUDIO: "🎵",
}
PROMPT_PREVIEW_CHARS = 300
MAX_FILES_PER_PARAM = 10  # where KIE states no maximum for a list of files


class UnknownModelError(TrtError, LookupError):
    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        super().__init__(f"unknown model {model_id!r}")


@dataclass(frozen=True, slots=True)
class Option:
    value: Any
    label: str


@dataclass(frozen=True, slots=True)
class ParamView:
    """One parameter as a screen needs it, in the user's language."""

    name: str
    label: str
    type: ParamType
    role: Role
    ui: Ui
    required: bool
    default: Any
    options: tuple[Option, ...]  # enum values, boolean yes/no, or number presets
    rule: str  # the constraint in words («от 4 до 12 с», «до 1000 символов»), or ""
    media: MediaSpec | None
    min_items: int | None
    max_items: int | None

    @property
    def optional(self) -> bool:
        """An upload (or text) the user may skip: not required, no minimum count."""
        return not self.required and not self.min_items

    @property
    def most(self) -> int:
        """How many files the parameter takes (one for a single-file parameter)."""
        if self.type is not ParamType.ARRAY:
            return 1
        return self.max_items or MAX_FILES_PER_PARAM

    @property
    def least(self) -> int:
        """How many files complete it: its minimum, at least one once the user sends any."""
        return max(self.min_items or 1, 1)


@dataclass(frozen=True, slots=True)
class ModelSchema:
    model: ModelSpec
    lang: str
    params: tuple[ParamView, ...]

    def param(self, name: str) -> ParamView:
        return next(p for p in self.params if p.name == name)

    @property
    def asked(self) -> tuple[ParamView, ...]:
        return tuple(p for p in self.params if p.ui is Ui.ASK)

    @property
    def controllers(self) -> frozenset[str]:
        """The parameters that choose a mode (named in some parameter's `modes`)."""
        return frozenset(
            name for spec in self.model.params.values() for mode in spec.modes for name in mode.when
        )

    def chosen(self, params: dict[str, Any]) -> dict[str, Any]:
        """`params` over every parameter's default: what decides the mode right now."""
        values = {p.name: p.default for p in self.params if p.default is not None}
        values.update(params)
        return values

    def in_mode(self, params: dict[str, Any]) -> tuple[ParamView, ...]:
        """The parameters the mode chosen by `params` uses, with that mode's counts."""
        chosen = self.chosen(params)
        views = []
        for view in self.params:
            spec = self.model.params[view.name]
            used = spec.in_mode(chosen)
            if used is None:
                continue
            if used is not spec:
                view = replace(
                    view,
                    label=used.label.get(self.lang) if used.label else view.label,
                    required=used.must or used.role is Role.PROMPT,
                    min_items=used.min_items,
                    max_items=used.max_items,
                    rule=plural(self.lang, "plural.chars", used.max_length)
                    if used.max_length is not None and used.max_length != spec.max_length
                    else view.rule,
                )
            views.append(view)
        return tuple(views)

    @property
    def options(self) -> tuple[ParamView, ...]:
        """What the «⚙️ Параметры» screen lets the user change."""
        return tuple(p for p in self.params if p.ui is not Ui.HIDDEN and p.role is not Role.MEDIA)


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str  # parameter name, or "" for errors about the whole request
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class ValidationResult:
    params: dict[str, Any] = field(default_factory=dict)
    errors: tuple[FieldError, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


class UnifiedModelPipeline:
    """One pipeline for every model in the catalogue."""

    def __init__(self, catalog: Catalog, rates: Rates) -> None:
        self.catalog = catalog
        self.base_rates = rates  # from configuration; runtime knobs may replace parts of it
        self.rates = rates
        self._model_rates: dict[str, Rates] = {}
        self._switched: dict[str, bool] = {}

    # -- runtime knobs (admin): rates, markup, a model on / off or its own markup -----------
    def apply_knobs(self, knobs: Knobs) -> None:
        """Make operators' runtime settings effective for every later quote and screen."""
        self.rates = Rates(
            knobs.usd_rub_rate or self.base_rates.usd_rub_rate,
            knobs.price_markup or self.base_rates.price_markup,
        )
        self._model_rates = {
            slug: Rates(self.rates.usd_rub_rate, markup)
            for slug, markup in knobs.model_markup.items()
        }
        self._switched = dict(knobs.model_enabled)

    def rates_for(self, model: ModelSpec) -> Rates:
        return self._model_rates.get(model.slug, self.rates)

    def is_enabled(self, model: ModelSpec) -> bool:
        """The catalogue's `enabled`, unless an operator switched the model at runtime."""
        return self._switched.get(model.slug, model.enabled)

    def listed(self, category: Category) -> list[ModelSpec]:
        """The models a category's screen lists: enabled ones, in catalogue order."""
        return [
            m for m in self.catalog.in_category(category, enabled_only=False) if self.is_enabled(m)
        ]

    # -- resolve and describe ------------------------------------------------------------
    def resolve_model(self, model_id: str) -> ModelSpec:
        """A model by slug, or by KIE id (market first, then dedicated families)."""
        found = self.catalog.get(model_id)
        if found is None:
            for family in Family:
                found = self.catalog.by_kie_id(model_id, family)
                if found is not None:
                    break
        if found is None:
            raise UnknownModelError(model_id)
        return found

    def get_schema(self, model_id: str, lang: str = "ru") -> ModelSchema:
        model = self.resolve_model(model_id)
        views = tuple(self._view(model, name, spec, lang) for name, spec in model.params.items())
        return ModelSchema(model=model, lang=lang, params=views)

    def _view(self, model: ModelSpec, name: str, spec: ParamSpec, lang: str) -> ParamView:
        if spec.offered is not None:
            values: list[Any] = list(spec.offered)
        elif spec.type is ParamType.BOOLEAN:
            values = [True, False]
        else:
            values = list(spec.choices or ())
        options = tuple(
            Option(value, self.catalog.value_label(model, name, value, lang)) for value in values
        )
        return ParamView(
            name=name,
            label=self.catalog.label(model, name).get(lang),
            type=spec.type,
            role=spec.role,
            ui=spec.ui,
            required=spec.must or spec.role is Role.PROMPT,
            default=spec.effective_default,
            options=options,
            rule=self._rule_text(spec, lang),
            media=spec.media,
            min_items=spec.min_items,
            max_items=spec.max_items,
        )

    def _rule_text(self, spec: ParamSpec, lang: str) -> str:
        unit = f" {spec.unit.get(lang)}" if spec.unit else ""
        if spec.minimum is not None and spec.maximum is not None:
            return f"{_num(spec.minimum)}–{_num(spec.maximum)}{unit}"
        if spec.max_length is not None:
            return plural(lang, "plural.chars", spec.max_length)
        if spec.max_items is not None:
            return plural(lang, "plural.files", spec.max_items)
        return ""

    # -- defaults and validation -----------------------------------------------------------
    def apply_defaults(self, schema: ModelSchema, collected: dict[str, Any]) -> dict[str, Any]:
        """`collected` plus every missing parameter's default; the prompt is never defaulted.

        Hidden parameters with a fixed `value` always carry it (e.g. the content filter on).
        """
        params = dict(collected)
        for name, spec in schema.model.params.items():
            if spec.role is Role.PROMPT:
                continue
            if spec.ui is Ui.HIDDEN and spec.value is not None:
                params[name] = spec.value
            elif name not in params and spec.effective_default is not None:
                default = spec.effective_default
                params[name] = list(default) if isinstance(default, list) else default
        # What the chosen mode does not use is not sent (frames left from another mode).
        return {
            name: value
            for name, value in params.items()
            if name not in schema.model.params or schema.model.params[name].in_mode(params)
        }

    def validate(self, model_id: str, params: Any, lang: str = "ru") -> ValidationResult:
        """Contract-driven check: one error per broken rule, in `lang`; never raises."""
        try:
            model = self.resolve_model(str(model_id))
        except UnknownModelError:
            message = t(lang, "validation.unknown_model", model=str(model_id)[:64])
            return ValidationResult(errors=(FieldError("", "unknown_model", message),))
        if not isinstance(params, dict):
            message = t(lang, "validation.type_object", label="params")
            return ValidationResult(errors=(FieldError("", "type", message),))
        errors: list[FieldError] = []
        clean: dict[str, Any] = {}
        for key in params:
            if not isinstance(key, str) or key not in model.params:
                shown = repr(key)[:64] if not isinstance(key, str) else key[:64]
                errors.append(
                    FieldError(str(key)[:64], "unknown", t(lang, "validation.unknown", name=shown))
                )
        chosen = {
            name: spec.effective_default
            for name, spec in model.params.items()
            if spec.effective_default is not None
        }
        chosen.update(params)
        for name, declared in model.params.items():
            used = declared.in_mode(chosen)
            if used is None:
                continue  # not used in the chosen mode: never checked, never sent
            spec = used
            label = self.catalog.label(model, name).get(lang)
            if name not in params or params[name] is None:
                if spec.must or spec.role is Role.PROMPT:
                    message = t(lang, "validation.required", label=label)
                    errors.append(FieldError(name, "required", message))
                continue
            value = rules.coerce(spec, params[name])
            violations = rules.check(spec, value)
            for violation in violations:
                errors.append(
                    FieldError(name, violation.code, self._message(model, name, violation, lang))
                )
            if not violations:
                clean[name] = value
        errors.extend(self._incompatibilities(model, clean, lang))
        if not errors:
            try:
                quote(model, clean, self.rates_for(model))
            except PricingError:
                errors.append(FieldError("", "price", t(lang, "validation.price")))
        if errors:
            return ValidationResult(params=clean, errors=tuple(errors))
        return ValidationResult(params=clean)

    def _incompatibilities(
        self, model: ModelSpec, params: dict[str, Any], lang: str
    ) -> list[FieldError]:
        found = []
        for rule in model.incompatible:
            if all(name in params and params[name] == v for name, v in rule.when.items()):
                parts = [
                    f"{self.catalog.label(model, name).get(lang)} "
                    f"{self.catalog.value_label(model, name, v, lang)}"
                    for name, v in rule.when.items()
                ]
                message = t(lang, "validation.incompatible", combination=" + ".join(parts))
                found.append(FieldError(next(iter(rule.when)), "incompatible", message))
        return found

    def _message(self, model: ModelSpec, name: str, violation: rules.Violation, lang: str) -> str:
        spec = model.params[name]
        label = self.catalog.label(model, name).get(lang)
        unit = f" {spec.unit.get(lang)}" if spec.unit else ""
        code, args = violation.code, violation.args
        if code == "type":
            return t(lang, f"validation.type_{args['expected']}", label=label)
        if code == "enum":
            labelled = spec.values or model_values_labelled(self.catalog, name)
            shown = [
                self.catalog.value_label(model, name, v, lang) if labelled else str(v)
                for v in args["allowed"]
            ]
            allowed = join_choices(lang, shown) + ("" if labelled else unit)
            return t(lang, "validation.enum", label=label, allowed=allowed)
        if code == "range":
            low, high = args["minimum"], args["maximum"]
            if low is not None and high is not None:
                return t(
                    lang,
                    "validation.range",
                    label=label,
                    minimum=_num(low),
                    maximum=_num(high),
                    unit=unit,
                )
            key = "validation.range_min" if low is not None else "validation.range_max"
            return t(lang, key, label=label, minimum=_num(low), maximum=_num(high), unit=unit)
        if code in ("min_length", "max_length"):
            limit = plural(lang, "plural.chars", args["limit"])
            return t(lang, f"validation.{code}", label=label, limit=limit)
        if code in ("min_items", "max_items"):
            limit = plural(lang, "plural.files", args["limit"])
            return t(lang, f"validation.{code}", label=label, limit=limit)
        if code == "duration":
            return t(
                lang,
                "validation.duration",
                label=label,
                rule=duration_rule(args["minimum"], args["maximum"], lang),
                seconds=args["seconds"],
            )
        return t(lang, f"validation.{code}", label=label)

    # -- price, payload, confirmation ------------------------------------------------------
    def quote(self, model_id: str, params: dict[str, Any]) -> Quote:
        model = self.resolve_model(model_id)
        return quote(model, params, self.rates_for(model))

    def cheapest_quote(self, model: ModelSpec) -> Quote:
        """The lowest price a run of `model` can have: the «от N ₽» of lists and cards.

        Every priced parameter takes its cheapest allowed value; a per-character price is
        quoted for 1000 characters.
        """
        price = model.price
        candidates: list[dict[str, Any]] = [{}]
        for name in (*price.by, *price.multiply_by):
            spec = model.params[name]
            values = _value_domain(spec)
            candidates = [{**c, name: v} for c in candidates for v in values]
        if price.per_1000_chars is not None:
            candidates = [{**c, price.per_1000_chars: "x" * 1000} for c in candidates]
        quotes = []
        for candidate in candidates:
            if self._incompatibilities(model, candidate, "en"):
                continue
            try:
                quotes.append(quote(model, candidate, self.rates_for(model)))
            except PricingError:
                continue
        assert quotes, f"{model.slug} has no priceable combination (checked at load)"
        return min(quotes, key=lambda q: q.amount_kop)

    def build_kie_payload(
        self, model_id: str, params: dict[str, Any], callback_url: str | None = None
    ) -> dict[str, Any]:
        """The exact request body KIE documents for the model's family.

        Market: `{"model", "callBackUrl"?, "input": {…}}`. Dedicated families (Veo, Suno) take a
        flat body with the model id in `model`. Values are sent with the schema's own types
        (validation already coerced them), so `"duration": "5"` stays a string.
        """
        model = self.resolve_model(model_id)
        values = {name: params[name] for name in model.params if name in params}
        if model.family is Family.MARKET:
            body: dict[str, Any] = {"model": model.kie_id}
            if callback_url is not None:
                body["callBackUrl"] = callback_url
            body["input"] = values
            return body
        body = {**values, "model": model.kie_id}
        if callback_url is not None:
            body["callBackUrl"] = callback_url
        return body

    def format_confirmation_text(
        self,
        model: ModelSpec,
        params: dict[str, Any],
        price: Quote,
        balance_kop: int,
        lang: str = "ru",
        *,
        free_left: int | None = None,
    ) -> str:
        """The one standard confirmation screen (HTML): model, parameters, price, balance, ETA."""
        lines = [
            t(
                lang,
                "confirm.title",
                icon=CATEGORY_ICONS[model.category],
                model=html.escape(model.title.get(lang)),
            )
        ]
        for name, spec in model.params.items():
            if spec.ui is Ui.HIDDEN or name not in params:
                continue
            label = html.escape(self.catalog.label(model, name).get(lang))
            value = params[name]
            if spec.media is not None:
                shown = media_summary(spec.media, value, lang)
                lines.append(t(lang, "confirm.param", label=label, value=html.escape(shown)))
            elif spec.role in (Role.PROMPT, Role.TEXT):
                text = str(value)
                if len(text) > PROMPT_PREVIEW_CHARS:
                    text = text[: PROMPT_PREVIEW_CHARS - 1] + "…"
                lines.append(t(lang, "confirm.prompt", label=label, value=html.escape(text)))
            else:
                shown = self.catalog.value_label(model, name, value, lang)
                lines.append(t(lang, "confirm.param", label=label, value=html.escape(shown)))
        lines.append("")
        if model.free and free_left is not None and free_left > 0:
            lines.append(t(lang, "confirm.free", left=free_left))
            lines.append(t(lang, "confirm.balance_after", balance=format_money(balance_kop)))
        else:
            lines.append(t(lang, "confirm.price", price=format_money(price.amount_kop)))
            after = balance_kop - price.amount_kop
            if after >= 0:
                lines.append(t(lang, "confirm.balance_after", balance=format_money(after)))
            else:
                lines.append(t(lang, "confirm.missing", missing=format_money(-after)))
        lines.append(t(lang, "confirm.eta", eta=format_eta(model.typical_duration_s, lang)))
        return "\n".join(lines)


def _value_domain(spec: ParamSpec) -> list[Any]:
    """The values a priced parameter can take (its bounds, for a free number; for an upload:
    none or one, at its shortest length when priced per second)."""
    if spec.media is not None:
        seconds = spec.media.min_duration_s or 1
        one = telegram_reference("x", seconds)
        given = [one] if spec.type is not ParamType.ARRAY else [[one]]
        return given if spec.must else [None, *given]
    if spec.offered is not None:
        return list(spec.offered)
    if spec.type is ParamType.BOOLEAN:
        return [False, True]
    values = [
        v for v in (spec.minimum, *(spec.choices or ()), spec.effective_default) if v is not None
    ]
    return values or [1]


def model_values_labelled(catalog: Catalog, name: str) -> bool:
    return name in catalog.source.value_labels


def media_summary(media: MediaSpec, value: Any, lang: str) -> str:
    """«2 фото», «1 видео, 12 с»: an upload on the confirmation screen."""
    items = media_items(value)
    text = plural(lang, f"plural.{media.kind.value}", len(items))
    seconds = [media_duration(item) for item in items]
    if items and all(s is not None for s in seconds):
        text += ", " + t(lang, "duration.seconds", n=sum(s for s in seconds if s is not None))
    return text


def duration_rule(minimum: float | None, maximum: float | None, lang: str) -> str:
    """«3–30 с», «до 15 с», «от 2 с»: a length limit in words."""
    if minimum is not None and maximum is not None:
        return t(lang, "flow.duration_range", minimum=_num(minimum), maximum=_num(maximum))
    if maximum is not None:
        return t(lang, "flow.duration_max", maximum=_num(maximum))
    return t(lang, "flow.duration_min", minimum=_num(minimum))


def format_eta(seconds: int, lang: str) -> str:
    if seconds < 90:
        return t(lang, "duration.seconds", n=seconds)
    return t(lang, "duration.minutes", n=-(-seconds // 60))


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value)
