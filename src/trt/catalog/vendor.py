"""Drift between the catalogue and KIE's published schemas.

Reads a vendor dump in the layout of KIE's market export (`{models: [{model, input,
input_required}]}`) or of the dedicated-endpoint export (`{endpoints: [{path, body,
body_required}]}`), normalises both into one shape, and compares model by model.

What counts as drift: a parameter added or removed, a type, enum, default or required flag that
differs, a range that is wider than the vendor's, a model missing on either side (vendor models
the catalogue deliberately skips are listed in `skipped_vendor_models`). Narrowing a vendor
range (a shorter maximum prompt, say) is TRT's choice and reported as a note, not as drift.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trt.catalog.loader import Catalog
from trt.catalog.schema import Family, ModelSpec, ParamSpec
from trt.media import canonical_format

VENDOR_DIR = Path(__file__).with_name("vendor")
SHIPPED_DUMPS = (VENDOR_DIR / "market_models.json", VENDOR_DIR / "dedicated_endpoints.json")

# Dedicated families: the create endpoint, and the body fields TRT sets itself.
DEDICATED_CREATE = {
    Family.VEO: "/api/v1/veo/generate",
    Family.SUNO: "/api/v1/generate",
    Family.SUNO_COVER: "/api/v1/generate/upload-cover",
    Family.SUNO_EXTEND: "/api/v1/generate/upload-extend",
}
DEDICATED_OWN_FIELDS = frozenset({"model", "callBackUrl"})
CHAT_PATH = re.compile(r"/([a-z0-9][a-z0-9.-]*)/v1/chat/completions")

_RANGE_FIELDS = (
    ("minimum", "minimum", "low"),
    ("maximum", "maximum", "high"),
    ("minLength", "min_length", "low"),
    ("maxLength", "max_length", "high"),
    ("minItems", "min_items", "low"),
    ("maxItems", "max_items", "high"),
)


@dataclass(frozen=True, slots=True)
class VendorModel:
    family: Family
    kie_id: str
    params: dict[str, dict[str, Any]]
    required: frozenset[str]
    example: dict[str, Any] | None = None


@dataclass
class VendorDump:
    families: set[Family] = field(default_factory=set)
    models: dict[tuple[Family, str], VendorModel] = field(default_factory=dict)
    # KIE's OpenAI-shaped chat models, by the name in their path (/{name}/v1/chat/completions).
    chat_models: set[str] = field(default_factory=set)

    def add(self, model: VendorModel) -> None:
        self.families.add(model.family)
        self.models[(model.family, model.kie_id)] = model


def load_vendor(paths: tuple[Path, ...] = SHIPPED_DUMPS) -> VendorDump:
    """Read one or more vendor dumps (either layout) into one normalised dump."""
    dump = VendorDump()
    for path in paths:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("models"), list):
            for entry in data["models"]:
                dump.add(
                    VendorModel(
                        family=Family.MARKET,
                        kie_id=entry["model"],
                        params=dict(entry.get("input") or {}),
                        required=frozenset(entry.get("input_required") or ()),
                        example=entry.get("example_request"),
                    )
                )
        elif isinstance(data, dict) and isinstance(data.get("endpoints"), list):
            by_path = {e["path"]: e for e in data["endpoints"]}
            for family, create_path in DEDICATED_CREATE.items():
                endpoint = by_path.get(create_path)
                if endpoint is None:
                    continue
                body = endpoint.get("body") or {}
                params = {k: v for k, v in body.items() if k not in DEDICATED_OWN_FIELDS}
                required = frozenset(endpoint.get("body_required") or ()) - DEDICATED_OWN_FIELDS
                example = endpoint.get("example_request")
                for kie_id in (body.get("model") or {}).get("enum", ()):
                    dump.add(VendorModel(family, kie_id, params, required, example))
            for chat in data.get("chat_endpoints") or ():
                match = CHAT_PATH.fullmatch(str(chat.get("path", "")))
                if match:
                    dump.chat_models.add(match[1])
        else:
            raise ValueError(f"{path}: neither a market ({{models}}) nor a dedicated dump")
    return dump


@dataclass(frozen=True, slots=True)
class Finding:
    model: str  # catalogue slug, or the vendor id for vendor-only models
    message: str
    drift: bool = True


def diff(catalog: Catalog, vendor: VendorDump) -> list[Finding]:
    """Every difference between the catalogue and the vendor dump, drift first."""
    findings: list[Finding] = []
    skipped = {s.id for s in catalog.source.skipped_vendor_models}
    covered = set()
    for model in catalog:
        if model.family not in vendor.families:
            continue
        key = (model.family, model.kie_id)
        covered.add(key)
        vendor_model = vendor.models.get(key)
        if vendor_model is None:
            findings.append(Finding(model.slug, f"{model.kie_id}: not in the vendor schemas"))
            continue
        findings.extend(_diff_model(model, vendor_model))
    for key, vendor_model in sorted(vendor.models.items()):
        if key in covered or vendor_model.kie_id in skipped:
            continue
        if vendor_model.family is Family.MARKET:
            findings.append(
                Finding(vendor_model.kie_id, "vendor model not in the catalogue (add or skip it)")
            )
    market_ids = {k for f, k in vendor.models if f is Family.MARKET}
    if Family.MARKET in vendor.families:
        for gone in sorted(skipped - market_ids):
            findings.append(Finding(gone, "skipped model no longer in the vendor schemas", False))
    return sorted(findings, key=lambda f: (not f.drift, f.model))


def _diff_model(model: ModelSpec, vendor: VendorModel) -> list[Finding]:
    found: list[Finding] = []

    def note(message: str, drift: bool = True) -> None:
        found.append(Finding(model.slug, message, drift))

    for name in sorted(set(model.params) - set(vendor.params)):
        note(f"parameter {name!r} is not in the vendor schema")
    for name in sorted(set(vendor.params) - set(model.params)):
        note(f"vendor parameter {name!r} is missing from the catalogue")
    for name in sorted(set(model.params) & set(vendor.params)):
        ours, theirs = model.params[name], vendor.params[name]
        for message, drift in _diff_param(ours, theirs, name in vendor.required):
            note(f"{name}: {message}", drift)
    return found


def _diff_param(ours: ParamSpec, theirs: dict[str, Any], required: bool) -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    if ours.type.value != theirs.get("type"):
        out.append((f"type {ours.type.value} vs vendor {theirs.get('type')}", True))
    vendor_items = (theirs.get("items") or {}).get("type")
    if ours.item_type is not None and vendor_items and ours.item_type.value != vendor_items:
        out.append((f"item type {ours.item_type.value} vs vendor {vendor_items}", True))
    if ours.required != required:
        out.append((f"required {ours.required} vs vendor {required}", True))
    vendor_enum = theirs.get("enum")
    if (list(ours.enum) if ours.enum is not None else None) != vendor_enum:
        # Values TRT lists where the vendor's schema gives none (taken from its description)
        # are a choice; any other difference, a value added or dropped, is drift. Values
        # TRT does not offer stay in `enum` and are listed under `not_offered`.
        chosen = ours.enum is not None and vendor_enum is None
        out.append((f"enum {_show(ours.enum)} vs vendor {_show(vendor_enum)}", not chosen))
    if ours.not_offered:
        out.append((f"not offered: {_show(ours.not_offered)}", False))
    if "default" in theirs and ours.default != theirs["default"]:
        out.append((f"default {ours.default!r} vs vendor {theirs['default']!r}", True))
    if ours.value is not None:
        out.append((f"TRT always sends {ours.value!r}", False))
    accepted = accepted_media(theirs)
    if ours.media is not None and accepted:
        offered = {f"{ours.media.kind.value}/{canonical_format(f)}" for f in ours.media.formats}
        if offered - accepted:
            out.append((f"formats {sorted(offered - accepted)} not accepted by the vendor", True))
    for vendor_key, our_key, side in _RANGE_FIELDS:
        mine, vendors = getattr(ours, our_key), theirs.get(vendor_key)
        if mine == vendors:
            continue
        narrower = mine is not None and (
            vendors is None or (mine >= vendors if side == "low" else mine <= vendors)
        )
        out.append((f"{our_key} {mine!r} vs vendor {vendors!r}", not narrower))
    return out


def _show(values: Any) -> str:
    if values is None:
        return "none"
    items = list(values)
    if len(items) > 8:
        return f"[{', '.join(map(repr, items[:8]))}, … {len(items)} values]"
    return repr(items)


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def _type_ok(kind: str | None, value: Any) -> bool:
    if kind is None:
        return True
    expected = _JSON_TYPES.get(kind, ())
    if isinstance(value, bool) and kind != "boolean":
        return False
    return isinstance(value, expected)


def check_vendor_input(model: VendorModel, values: dict[str, Any]) -> list[str]:
    """Problems of an input against the vendor's own schema (not TRT's catalogue).

    Checks what KIE's schemas state: required, unknown fields, JSON type, enum, numeric range,
    string length, item count and item type. Used by the sandbox KIE server and by the tests
    that compare documented examples with TRT's payloads.
    """
    problems = [f"{name}: required" for name in sorted(model.required) if name not in values]
    for name, value in values.items():
        spec = model.params.get(name)
        if spec is None:
            problems.append(f"{name}: unknown parameter")
            continue
        kind = spec.get("type")
        if not _type_ok(kind, value):
            problems.append(f"{name}: expected {kind}")
            continue
        if "enum" in spec and value not in spec["enum"]:
            problems.append(f"{name}: {value!r} not in {_show(spec['enum'])}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if "minimum" in spec and value < spec["minimum"]:
                problems.append(f"{name}: below minimum {spec['minimum']}")
            if "maximum" in spec and value > spec["maximum"]:
                problems.append(f"{name}: above maximum {spec['maximum']}")
        if isinstance(value, str):
            if "minLength" in spec and len(value) < spec["minLength"]:
                problems.append(f"{name}: shorter than {spec['minLength']}")
            if "maxLength" in spec and len(value) > spec["maxLength"]:
                problems.append(f"{name}: longer than {spec['maxLength']}")
        if isinstance(value, list):
            if "minItems" in spec and len(value) < spec["minItems"]:
                problems.append(f"{name}: fewer than {spec['minItems']} items")
            if "maxItems" in spec and len(value) > spec["maxItems"]:
                problems.append(f"{name}: more than {spec['maxItems']} items")
            item_kind = (spec.get("items") or {}).get("type")
            if not all(_type_ok(item_kind, item) for item in value):
                problems.append(f"{name}: items must be {item_kind}")
    return problems


_MIME = re.compile(r"\b(image|video|audio)/([a-z0-9.+-]+)")


def accepted_media(spec: dict[str, Any]) -> frozenset[str]:
    """The MIME types a vendor parameter's description accepts («支持的格式：image/jpeg、…»),
    canonical (`image/jpeg`, `audio/mpeg`); empty when the description names none."""
    text = str(spec.get("description_zh") or spec.get("description") or "")
    return frozenset(f"{major}/{canonical_format(sub)}" for major, sub in _MIME.findall(text))


def example_input(model: VendorModel) -> dict[str, Any] | None:
    """The input part of the vendor's documented example request."""
    if model.example is None:
        return None
    if model.family is Family.MARKET:
        found = model.example.get("input")
        return found if isinstance(found, dict) else None
    return {k: v for k, v in model.example.items() if k not in DEDICATED_OWN_FIELDS}


def example_contradictions(model: VendorModel) -> list[str]:
    """Why the vendor's example contradicts its own schema (empty when it does not)."""
    if model.example is None:
        return ["no example request"]
    problems = []
    if model.example.get("model") != model.kie_id:
        problems.append(f"example uses model {model.example.get('model')!r}")
    return problems + check_vendor_input(model, example_input(model) or {})
