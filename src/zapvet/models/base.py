"""Shared column helpers: ids, organization scoping, timestamps and cross-organization guards.

Every organization-scoped table carries `organization_id` and a `UNIQUE (organization_id, id)`;
children reference parents through composite foreign keys on `(organization_id, parent_id)`,
so the database itself refuses a row that points at another organization's row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKeyConstraint, UniqueConstraint, func
from sqlmodel import Field, SQLModel

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def id_field() -> Any:
    return Field(default=None, primary_key=True, sa_type=BigInteger)


def org_field() -> Any:
    return Field(
        sa_type=BigInteger, foreign_key="organizations.id", ondelete="CASCADE", nullable=False
    )


def ref_field(*, nullable: bool = False, index: bool = False) -> Any:
    """A reference column; its foreign key is declared with `org_fk` in `__table_args__`."""
    return Field(default=None, sa_type=BigInteger, nullable=nullable, index=index)


def created_field() -> Any:
    return Field(
        default_factory=utcnow,
        sa_type=DateTime(timezone=True),
        nullable=False,
        sa_column_kwargs={"server_default": func.now()},
    )


def updated_field() -> Any:
    return Field(
        default_factory=utcnow,
        sa_type=DateTime(timezone=True),
        nullable=False,
        sa_column_kwargs={"server_default": func.now(), "onupdate": utcnow},
    )


def moment_field(*, nullable: bool = True) -> Any:
    """A point in time (`timestamptz`); a required one defaults to now."""
    if nullable:
        return Field(default=None, sa_type=DateTime(timezone=True), nullable=True)
    return Field(default_factory=utcnow, sa_type=DateTime(timezone=True), nullable=False)


def org_unique(table: str) -> UniqueConstraint:
    """The target of composite foreign keys from this table's children."""
    return UniqueConstraint("organization_id", "id", name=f"uq_{table}_org_id")


def org_fk(column: str, parent: str, *, ondelete: str | None = "CASCADE") -> ForeignKeyConstraint:
    """`(organization_id, column)` must name a row of the same organization in `parent`."""
    return ForeignKeyConstraint(
        ["organization_id", column],
        [f"{parent}.organization_id", f"{parent}.id"],
        ondelete=ondelete,
        name=f"fk_{column}_same_org_{parent}",
    )
