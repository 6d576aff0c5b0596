"""Alembic migrations, shipped as a package resource (`script_location = zapvet:migrations`)."""
