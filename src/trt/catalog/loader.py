"""Loading the catalogue: strict parsing, then cross-checks, then a read-only `Catalog`.

A defect stops startup with a message naming the model, the field path and the rule broken, so
a bad edit of `models.yaml` never reaches users.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from trt.catalog import rules
from trt.catalog.schema import (
    CatalogFile,
    Category,
    Family,
    MediaKind,
    ModelSpec,
    ModeSpec,
    ParamSpec,
    ParamType,
    Role,
    Text,
    Ui,
    table_key,
)
from trt.errors import TrtError
from trt.i18n import t

CATALOG_PATH = Path(__file__).with_name("models.yaml")
# libyaml's C loader parses the catalogue ~10x faster than the pure-Python one.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_TITLE_CHARS = 40  # a model's title is a button label
MAX_DESCRIPTION_CHARS = 200


@dataclass(frozen=True, slots=True)
class CatalogDefect:
    model: str  # slug, or "-" for file-level defects
    path: str  # e.g. "params.duration.default"
    rule: str

    def __str__(self) -> str:
        return f"{self.model}: {self.path}: {self.rule}"


class CatalogError(TrtError):
    def __init__(self, defects: list[CatalogDefect]) -> None:
        self.defects = defects
        super().__init__("Model catalogue is invalid:\n" + "\n".join(f"  {d}" for d in defects))


class Catalog:
    """The validated catalogue; the one place models, labels and price rules are read from."""

    def __init__(self, source: CatalogFile) -> None:
        self.source = source
        self.models: dict[str, ModelSpec] = {m.slug: m for m in source.models}
        self._by_kie_id = {(m.family, m.kie_id): m for m in source.models}

    def __iter__(self) -> Any:
        return iter(self.models.values())

    def __len__(self) -> int:
        return len(self.models)

    def get(self, slug: str) -> ModelSpec | None:
        return self.models.get(slug)

    def by_kie_id(self, kie_id: str, family: Family = Family.MARKET) -> ModelSpec | None:
        return self._by_kie_id.get((family, kie_id))

    def in_category(self, category: Category, *, enabled_only: bool = True) -> list[ModelSpec]:
        return [
            m
            for m in self.models.values()
            if m.category is category and (m.enabled or not enabled_only)
        ]

    def label(self, model: ModelSpec, name: str) -> Text:
        spec = model.params[name]
        found = spec.label or self.source.labels.get(name)
        assert found is not None, f"{model.slug}.{name} has no label (checked at load)"
        return found

    def value_label(self, model: ModelSpec, name: str, value: Any, lang: str) -> str:
        """How a parameter value reads to a person («16:9 горизонтально», «5 с», «да»)."""
        spec = model.params[name]
        key = table_key([value])
        own = (spec.values or {}).get(key) or self.source.value_labels.get(name, {}).get(key)
        if own is not None:
            return own.get(lang)
        if isinstance(value, bool):
            return t(lang, "common.yes_word" if value else "common.no_word")
        if isinstance(value, list):
            return str(len(value))
        text = str(value)
        if spec.unit is not None:
            text = f"{text} {spec.unit.get(lang)}"
        return text


def load_catalog(path: Path = CATALOG_PATH) -> Catalog:
    """Parse and cross-check a catalogue file; raise `CatalogError` listing every defect."""
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError([CatalogDefect("-", str(path), f"cannot read: {exc}")]) from None
    return parse_catalog(raw)


def parse_catalog(raw: Any) -> Catalog:
    try:
        source = CatalogFile.model_validate(raw)
    except ValidationError as exc:
        raise CatalogError(_schema_defects(raw, exc)) from None
    defects = cross_check(source)
    if defects:
        raise CatalogError(defects)
    return Catalog(source)


@cache
def default_catalog() -> Catalog:
    """The packaged catalogue, loaded once per process."""
    return load_catalog()


def _schema_defects(raw: Any, exc: ValidationError) -> list[CatalogDefect]:
    defects = []
    for error in exc.errors(include_url=False):
        loc = list(error["loc"])
        model = "-"
        if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
            try:
                model = str(raw["models"][loc[1]].get("slug", f"models[{loc[1]}]"))
            except (KeyError, IndexError, TypeError, AttributeError):
                model = f"models[{loc[1]}]"
            loc = loc[2:]
        path = ".".join(str(part) for part in loc) or "-"
        message = str(error["msg"]).removeprefix("Value error, ")
        defects.append(CatalogDefect(model, path, message))
    return defects


def cross_check(source: CatalogFile) -> list[CatalogDefect]:
    """The rules no single field can check: uniqueness, defaults, prices, button budget."""
    defects: list[CatalogDefect] = []
    seen_slugs: set[str] = set()
    seen_ids: set[tuple[Family, str]] = set()
    for model in source.models:

        def defect(path: str, rule: str, slug: str = model.slug) -> None:
            defects.append(CatalogDefect(slug, path, rule))

        if model.slug in seen_slugs:
            defect("slug", "slugs must be unique")
        seen_slugs.add(model.slug)
        if (model.family, model.kie_id) in seen_ids:
            defect("kie_id", f"{model.kie_id} appears twice in family {model.family.value}")
        seen_ids.add((model.family, model.kie_id))
        for lang in ("ru", "en"):
            if len(model.title.get(lang)) > MAX_TITLE_CHARS:
                defect(f"title.{lang}", f"at most {MAX_TITLE_CHARS} characters (a button)")
            if len(model.description.get(lang)) > MAX_DESCRIPTION_CHARS:
                defect(f"description.{lang}", f"at most {MAX_DESCRIPTION_CHARS} characters")
        prompts = [n for n, p in model.params.items() if p.role is Role.PROMPT]
        if len(prompts) > 1:
            defect("params", f"at most one prompt parameter, found {prompts}")
        if not prompts and not any(p.is_media and p.ui is Ui.ASK for p in model.params.values()):
            defect("params", "a model needs a prompt or an asked media input")
        for name, spec in model.params.items():
            _check_param(source, model, name, spec, defect)
        _check_price(model, defect)
        _check_incompatible(model, defect)
    defects.extend(_check_follow_ups(source))
    return defects


MAX_FOLLOW_UP_LABEL = 24  # two buttons share a row under the result


def _check_follow_ups(source: CatalogFile) -> list[CatalogDefect]:
    defects = []
    models = {m.slug: m for m in source.models}
    for index, follow in enumerate(source.follow_ups):
        where = f"follow_ups[{index}]"

        def defect(rule: str, where: str = where, slug: str = follow.model) -> None:
            defects.append(CatalogDefect(slug, where, rule))

        target = models.get(follow.model)
        if target is None:
            defect("no such model")
            continue
        spec = target.params.get(follow.param)
        if spec is None or spec.media is None:
            defect(f"{follow.param!r} is not an upload parameter of {follow.model}")
            continue
        if any(kind.value != spec.media.kind.value for kind in follow.after):
            defect(f"{follow.param} takes {spec.media.kind.value}, not every kind in `after`")
        for slug in follow.only:
            if slug not in models:
                defect(f"`only` names no model {slug!r}")
        for lang in ("ru", "en"):
            if len(follow.label.get(lang)) > MAX_FOLLOW_UP_LABEL:
                defect(f"label.{lang} is over {MAX_FOLLOW_UP_LABEL} characters")
    return defects


def _check_param(
    source: CatalogFile, model: ModelSpec, name: str, spec: ParamSpec, defect: Any
) -> None:
    where = f"params.{name}"
    if spec.label is None and name not in source.labels:
        defect(where, "no label: add it under `labels:` or give the parameter a `label`")
    for field in ("default", "value"):
        candidate = getattr(spec, field)
        if candidate is None:
            continue
        for violation in rules.check(spec, candidate):
            defect(f"{where}.{field}", f"{candidate!r} breaks its own rule ({violation.code})")
    asked = spec.role is Role.PROMPT or spec.ui is Ui.ASK
    if spec.must and not asked and spec.effective_default is None:
        defect(where, "required but neither asked (ui: ask) nor defaulted")
    if spec.is_media:
        if spec.type is ParamType.ARRAY and spec.item_type is not ParamType.STRING:
            defect(where, "media arrays hold URL strings")
        elif spec.type not in (ParamType.ARRAY, ParamType.STRING):
            defect(where, "media is a URL string or an array of them")
    if spec.values is not None and spec.enum is not None:
        unknown = set(spec.values) - {table_key([v]) for v in spec.enum}
        if unknown:
            defect(f"{where}.values", f"labels for values not in enum: {sorted(unknown)}")
    if spec.choices is not None:
        for choice in spec.choices:
            if rules.check(spec, choice):
                defect(f"{where}.choices", f"{choice!r} breaks the parameter's rule")
    for index, mode in enumerate(spec.modes):
        _check_mode(model, spec, f"{where}.modes[{index}]", mode, defect)


def _check_mode(model: ModelSpec, spec: ParamSpec, where: str, mode: ModeSpec, defect: Any) -> None:
    """A mode names real choices with valid values, and narrows (never widens) the rule."""
    for name, wanted in mode.when.items():
        chooser = model.params.get(name)
        if chooser is None:
            defect(f"{where}.when", f"{name!r} is not a parameter")
            continue
        if chooser.modes:
            defect(f"{where}.when", f"{name!r} has modes itself (one level only)")
        if chooser.ui is Ui.HIDDEN:
            defect(f"{where}.when", f"{name!r} is hidden: the user could never choose the mode")
        for value in wanted if isinstance(wanted, tuple) else (wanted,):
            if rules.check(chooser, value):
                defect(f"{where}.when", f"{name}={value!r} is not a valid value")
    if (mode.min_items is not None or mode.max_items is not None) and (
        spec.type is not ParamType.ARRAY
    ):
        defect(where, "min_items / max_items apply to arrays only")
    if (
        mode.max_items is not None
        and spec.max_items is not None
        and (mode.max_items > spec.max_items)
    ):
        defect(f"{where}.max_items", f"wider than the parameter's own {spec.max_items}")
    if (
        mode.min_items is not None
        and spec.min_items is not None
        and (mode.min_items < spec.min_items)
    ):
        defect(f"{where}.min_items", f"wider than the parameter's own {spec.min_items}")
    if mode.max_length is not None and spec.type is not ParamType.STRING:
        defect(f"{where}.max_length", "max_length applies to strings only")


def _check_price(model: ModelSpec, defect: Any) -> None:
    price = model.price
    for name in (*price.by, *price.multiply_by):
        if name not in model.params:
            defect("price", f"priced parameter {name!r} is not a parameter")
            return
    for name in price.by:
        spec = model.params[name]
        if spec.enum is None and spec.type is not ParamType.BOOLEAN and not spec.is_media:
            defect(f"price.by.{name}", "table keys must be enum, boolean or upload parameters")
            return
    for name in price.multiply_by:
        spec = model.params[name]
        if spec.media is not None:
            # Priced per second of the upload: its length must be known and bounded.
            if spec.media.kind is MediaKind.IMAGE or spec.media.max_duration_s is None:
                defect(
                    f"price.multiply_by.{name}",
                    "an upload priced per second needs a video or audio kind with max_duration_s",
                )
            if not spec.must or spec.ui is not Ui.ASK:
                defect(f"price.multiply_by.{name}", "an upload priced per second must be asked")
            continue
        if not rules.is_numeric_param(spec):
            defect(f"price.multiply_by.{name}", "must be a numeric parameter")
        if spec.effective_default is None and spec.ui is not Ui.ASK:
            defect(f"price.multiply_by.{name}", "must always have a value (asked or defaulted)")
    if price.per_1000_chars is not None:
        spec_text = model.params.get(price.per_1000_chars)
        if spec_text is None or spec_text.type is not ParamType.STRING:
            defect("price.per_1000_chars", "must name a string parameter")
    if price.table is None:
        return
    domains = [_domain(model.params[name]) for name in price.by]
    expected = set()
    for combo in itertools.product(*domains):
        if _is_incompatible(model, dict(zip(price.by, combo, strict=True))):
            continue
        key = table_key(list(combo))
        expected.add(key)
        if key not in price.table:
            defect("price.table", f"no price for {'|'.join(price.by)} = {key}")
    for key in sorted(set(price.table) - expected):
        defect("price.table", f"row {key!r} matches no allowed combination")


def _domain(spec: ParamSpec) -> list[Any]:
    if spec.offered is not None:
        return list(spec.offered)
    if spec.is_media and spec.must and not spec.modes:
        return [True]  # an upload priced by being given: always given
    return [False, True]


def _is_incompatible(model: ModelSpec, values: dict[str, Any]) -> bool:
    for rule in model.incompatible:
        if all(name in values and values[name] == v for name, v in rule.when.items()):
            return True
    return False


def _check_incompatible(model: ModelSpec, defect: Any) -> None:
    for index, rule in enumerate(model.incompatible):
        for name, value in rule.when.items():
            spec = model.params.get(name)
            if spec is None:
                defect(f"incompatible[{index}]", f"{name!r} is not a parameter")
            elif rules.check(spec, value):
                defect(f"incompatible[{index}]", f"{name}={value!r} is not a valid value")
