"""The payment providers TRT knows, in the order the top-up screen offers them.

A new provider is one module in this package (a class meeting `providers.PaymentProvider`,
or `HostedCheckout` for a pay-on-their-page provider, and its `build`) plus one line here.
"""

from __future__ import annotations

from trt.payments import stars, yookassa
from trt.payments.providers import Build, ProviderContext, Providers

REGISTERED: tuple[Build, ...] = (
    stars.build,
    yookassa.build,
)


async def build_providers(context: ProviderContext) -> Providers:
    """Every registered provider that is configured."""
    built = [await build(context) for build in REGISTERED]
    return Providers(provider for provider in built if provider is not None)
