"""Alembic migrations; run them with `trt migrate` (see trt.db.migrate)."""
