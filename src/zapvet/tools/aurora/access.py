"""Aurora's access to the database: the owner check every call repeats, and naming a client."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

from langgraph.prebuilt import ToolRuntime
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.bridge.identity import digits_only, normalise_phone, phone_variants
from zapvet.commands.proposals import Owner, owner_number
from zapvet.errors import ToolError
from zapvet.models import Contact
from zapvet.scheduling import booking
from zapvet.scheduling.catalogue import fold
from zapvet.tools.context import AuroraContext
from zapvet.tools.deps import ToolDeps

_ID = re.compile(r"^#?(\d{1,9})$")


@dataclass(frozen=True)
class Call:
    """One tool call's transaction, the owner it acts for and the organization's policy."""

    session: AsyncSession
    owner: Owner
    org: booking.OrgPolicy


def caller(
    deps: ToolDeps,
) -> Callable[[ToolRuntime[AuroraContext]], AbstractAsyncContextManager[Call]]:
    """`call(runtime)`: a transaction for a caller whose owner number is still active.

    Raises:
        ToolError: the context is missing or the number is no longer the owner's.
    """

    @asynccontextmanager
    async def call(runtime: ToolRuntime[AuroraContext]) -> AsyncIterator[Call]:
        context = _context(runtime)
        owner = Owner(context.organization_id, context.owner_number_id)
        async with deps.sessions() as session, session.begin():
            if await owner_number(session, owner) is None:
                raise ToolError("Este número não está autorizado a usar a Aurora.")
            org = await booking.load_policy(session, context.organization_id)
            yield Call(session, owner, org)

    return call


def _context(runtime: ToolRuntime[AuroraContext]) -> AuroraContext:
    context = runtime.context
    if isinstance(context, dict):
        context = AuroraContext(**context)
    if not isinstance(context, AuroraContext) or not context.complete:
        raise ToolError("Não consigo confirmar que esta conversa é do dono; nada foi feito.")
    return context


def _phones(text: str) -> tuple[str, ...]:
    """Stored spellings of a phone the owner typed, with or without "+55" and the ninth digit."""
    try:
        return phone_variants(normalise_phone(text))
    except ValueError:
        return phone_variants(text)


async def resolve_client(session: AsyncSession, org_id: int, query: str) -> Contact:
    """A client named by "#id", phone (with or without the ninth digit) or (part of) name.

    Raises:
        ToolError: none or several match (the several are listed).
    """
    text = query.strip()
    base = select(Contact).where(Contact.organization_id == org_id)
    by_id = _ID.match(text)
    if by_id:
        found = (await session.exec(base.where(Contact.id == int(by_id[1])))).all()
    elif len(digits_only(text)) >= 8:
        found = (await session.exec(base.where(col(Contact.phone).in_(_phones(text))))).all()
    else:
        wanted = fold(text)
        found = [c for c in await session.exec(base) if c.name and wanted in fold(c.name)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise ToolError(f"Nenhum cliente encontrado para '{query}'. Use find_client.")
    options = "; ".join(f"#{c.id} {c.name or '-'} ({c.phone or 'sem telefone'})" for c in found[:8])
    raise ToolError(f"Mais de um cliente para '{query}': {options}. Pergunte qual.")


def loosely_matches(contact: Contact, query: str) -> bool:
    """Part of the name (any case and accents) or part of the phone's digits."""
    digits = digits_only(query)
    if fold(query) and fold(query) in fold(contact.name or ""):
        return True
    return bool(digits) and digits in (contact.phone or "")
