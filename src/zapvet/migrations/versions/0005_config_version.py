"""Organizations carry a configuration version, bumped by the database on every change.

Processes cache an organization's configuration (instances, owner numbers, AI settings,
services, hours, closures) and check this one number per turn instead of
reading seven tables. Triggers bump it on any insert, update or delete of those rows,
whoever writes them (`zapvet org apply`, Aurora's commands, the bridge learning an owner's
LID, a psql session), so a cache is never stale after a committed change.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 22:30:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Every table an organization's cached configuration is read from. Not `resources`: the
#: capacity trigger bumps their `booking_seq` on every booking, and nothing cached reads them.
CONFIG_TABLES = (
    "ai_settings",
    "whatsapp_instances",
    "aurora_owner_numbers",
    "services",
    "business_hours",
    "closures",
)


def upgrade() -> None:
    op.add_column(
        "organizations",
        sa.Column("config_version", sa.BigInteger(), nullable=False, server_default="1"),
    )
    op.execute(
        """
        CREATE FUNCTION zapvet_bump_config_version() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP IN ('UPDATE', 'DELETE') THEN
                UPDATE organizations SET config_version = config_version + 1
                 WHERE id = OLD.organization_id;
            END IF;
            IF TG_OP IN ('INSERT', 'UPDATE') THEN
                UPDATE organizations SET config_version = config_version + 1
                 WHERE id = NEW.organization_id;
            END IF;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION zapvet_organization_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.config_version = OLD.config_version THEN
                NEW.config_version := OLD.config_version + 1;
            END IF;
            RETURN NEW;
        END $$
        """
    )
    for table in CONFIG_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_config_version AFTER INSERT OR UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION zapvet_bump_config_version()"
        )
    op.execute(
        "CREATE TRIGGER organizations_config_version BEFORE UPDATE ON organizations "
        "FOR EACH ROW EXECUTE FUNCTION zapvet_organization_changed()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER organizations_config_version ON organizations")
    for table in CONFIG_TABLES:
        op.execute(f"DROP TRIGGER {table}_config_version ON {table}")
    op.execute("DROP FUNCTION zapvet_organization_changed()")
    op.execute("DROP FUNCTION zapvet_bump_config_version()")
    op.drop_column("organizations", "config_version")
