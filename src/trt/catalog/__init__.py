"""The model catalogue (SSOT): schema, loader with cross-checks, pricing, vendor drift."""
