"""Alembic migrations, installed as ivr.migrations (package data: tongdai db upgrade finds them)."""
