"""`trt models …`: list, show, price, check and diff the catalogue from a terminal."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from trt.catalog.loader import CatalogError, load_catalog
from trt.catalog.pricing import Rates, format_money
from trt.catalog.schema import Category, Ui
from trt.catalog.vendor import SHIPPED_DUMPS, diff, load_vendor
from trt.config import load_config
from trt.pipeline import UnifiedModelPipeline


def _pipeline() -> UnifiedModelPipeline:
    pricing = load_config().pricing
    return UnifiedModelPipeline(load_catalog(), Rates(pricing.usd_rub_rate, pricing.price_markup))


SAMPLE_PROMPT_CHARS = 1000
SAMPLE_MEDIA_URL = "https://example.invalid/input.png"


def _sample_params(
    pipeline: UnifiedModelPipeline, slug: str, given: dict[str, str], lang: str = "ru"
) -> dict[str, object]:
    """`given` plus defaults, a placeholder prompt and placeholder uploads where missing.

    Prices never depend on the uploaded files; per-character prices are quoted for a
    1000-character text unless one is given.
    """
    schema = pipeline.get_schema(slug, lang)
    params: dict[str, object] = pipeline.apply_defaults(schema, given)
    prompt = schema.model.prompt_param
    if prompt is not None and prompt not in params:
        params[prompt] = "x" * SAMPLE_PROMPT_CHARS
    for view in schema.params:
        if view.media is not None and view.name not in params and view.ui is Ui.ASK:
            single = view.type.value == "string"
            params[view.name] = SAMPLE_MEDIA_URL if single else [SAMPLE_MEDIA_URL]
    return params


def _start_price(pipeline: UnifiedModelPipeline, slug: str) -> str:
    model = pipeline.resolve_model(slug)
    return format_money(pipeline.cheapest_quote(model).amount_kop)


def cmd_list(args: argparse.Namespace) -> int:
    pipeline = _pipeline()
    categories = [Category(args.category)] if args.category else list(Category)
    for category in categories:
        models = pipeline.catalog.in_category(category, enabled_only=False)
        print(f"{category.value} ({len(models)})")
        for model in models:
            flags = ("" if model.enabled else " [off]") + (" [free]" if model.free else "")
            price = _start_price(pipeline, model.slug)
            print(f"  {model.slug:<10} {model.kie_id:<40} from {price:>8}{flags}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    pipeline = _pipeline()
    schema = pipeline.get_schema(args.slug, args.lang)
    model = schema.model
    print(f"{model.title.get(args.lang)} — {model.description.get(args.lang)}")
    print(
        f"slug {model.slug}  kie_id {model.kie_id}  family {model.family.value}  "
        f"category {model.category.value}  output {model.output.value}  "
        f"~{model.typical_duration_s}s  enabled {model.enabled}  free {model.free}"
    )
    print(f"price rule: {model.price.model_dump(exclude_none=True, exclude_defaults=True)}")
    for view in schema.params:
        options = ", ".join(o.label for o in view.options[:12])
        if len(view.options) > 12:
            options += f", … ({len(view.options)})"
        print(
            f"  {view.name:<22} {view.label:<24} {view.type.value:<8} {view.ui.value:<7}"
            f" default={view.default!r}"
            + (f" [{options}]" if options else "")
            + (f" {view.rule}" if view.rule else "")
            + (" required" if view.required else "")
        )
    return 0


def cmd_price(args: argparse.Namespace) -> int:
    pipeline = _pipeline()
    given = {}
    for pair in args.params:
        key, sep, value = pair.partition("=")
        if not sep:
            print(f"trt: expected key=value, got {pair!r}")
            return 2
        given[key] = value
    params = _sample_params(pipeline, args.slug, given, args.lang)
    result = pipeline.validate(args.slug, params, args.lang)
    if not result.ok:
        for error in result.errors:
            print(f"  ✗ {error.message}")
        return 1
    quote = pipeline.quote(args.slug, result.params)
    print(f"{quote.credits} credits = ${quote.usd} → {format_money(quote.amount_kop)}")
    return 0


def cmd_check(_args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        catalog = load_catalog()
    except CatalogError as exc:
        print(exc)
        return 1
    elapsed_ms = (time.perf_counter() - started) * 1000
    enabled = sum(1 for m in catalog if m.enabled)
    print(
        f"catalogue OK: {len(catalog)} models ({enabled} enabled), "
        f"loaded and checked in {elapsed_ms:.0f} ms"
    )
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    paths = tuple(Path(p) for p in args.vendor) if args.vendor else SHIPPED_DUMPS
    findings = diff(load_catalog(), load_vendor(paths))
    drift = [f for f in findings if f.drift]
    notes = [f for f in findings if not f.drift]
    for finding in drift:
        print(f"DRIFT {finding.model}: {finding.message}")
    if args.verbose:
        for finding in notes:
            print(f"note  {finding.model}: {finding.message}")
    print(
        f"{len(drift)} drift finding(s), {len(notes)} deliberate difference(s) "
        f"(-v lists them) against {', '.join(p.name for p in paths)}"
    )
    return 1 if drift and args.strict else 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = sub.add_parser(
        "models",
        help="Inspect the model catalogue.",
        description="Inspect the model catalogue (catalog/models.yaml).",
    )
    commands = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    def add(name: str, handler: object, text: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=text, description=text)
        parser.set_defaults(handler=handler)
        return parser

    listing = add("list", cmd_list, "List models by category with their starting price.")
    listing.add_argument("--category", choices=[c.value for c in Category])
    show = add("show", cmd_show, "Show one model: parameters, labels, defaults, price rule.")
    show.add_argument("slug")
    show.add_argument("--lang", choices=["ru", "en"], default="ru")
    price = add("price", cmd_price, "Price one run: trt models price SLUG key=value …")
    price.add_argument("slug")
    price.add_argument("params", nargs="*", metavar="key=value")
    price.add_argument("--lang", choices=["ru", "en"], default="ru")
    add("check", cmd_check, "Load the catalogue strictly and run every cross-check.")
    diff_parser = add("diff", cmd_diff, "Compare the catalogue with KIE's schema dump.")
    diff_parser.add_argument(
        "--vendor",
        action="append",
        metavar="FILE",
        help="vendor dump (market or dedicated layout); repeatable; "
        "default: the dump shipped with TRT",
    )
    diff_parser.add_argument("--strict", action="store_true", help="exit 1 on drift")
    diff_parser.add_argument(
        "-v", "--verbose", action="store_true", help="also list deliberate differences"
    )
