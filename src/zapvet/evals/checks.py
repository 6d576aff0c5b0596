"""A scenario's expectations checked against each turn's reply and the rows at the end."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, col, select

from zapvet.evals.outcome import ScenarioRun, TurnRecord
from zapvet.evals.scenario import AppointmentExpect, Scenario, Turn
from zapvet.evals.world import World, local
from zapvet.models import (
    Appointment,
    AuditLog,
    AuroraPendingAction,
    AuroraProactiveMessage,
    Contact,
    Conversation,
    Message,
    Pet,
    Service,
)
from zapvet.money import format_brl, parse_price
from zapvet.proactive.planning import ALERT


def check_turn(index: int, turn: Turn, record: TurnRecord, scripted: bool) -> list[str]:
    """One turn's expectations; a real model's wording is checked only for silence.

    `silent` is no reply at all: nothing sent and no tool called (a sticker, an escalated
    conversation); a media notice is a reply. How many messages were `sent` and what was
    `answered` are the pipeline's doing, checked whatever model runs.
    """
    failures = []
    label = f"turn {index + 1}"
    expect = turn.expect
    if expect.silent and record.reply is not None:
        failures.append(f"{label}: expected silence, got a reply")
    if expect.silent and record.tools:
        failures.append(f"{label}: expected silence, got tool calls {record.tools}")
    heard = "\n".join(record.heard).casefold()
    failures += [f"{label}: the agent was not given {t!r}" for t in _missing(expect.heard, heard)]
    if expect.answered is not None and record.answered != expect.answered:
        failures.append(f"{label}: answered {record.answered} != expected {expect.answered}")
    if expect.sent is not None and len(record.sent) != len(expect.sent):
        failures.append(f"{label}: {len(record.sent)} messages sent, expected {len(expect.sent)}")
    if not scripted:
        return failures
    if expect.sent is not None and len(record.sent) == len(expect.sent):
        failures += [
            f"{label}: message {n} sent lacks {want!r}: {got!r}"
            for n, (want, got) in enumerate(zip(expect.sent, record.sent, strict=True), start=1)
            if want.casefold() not in got.casefold()
        ]
    if expect.tools is not None and record.tools != expect.tools:
        failures.append(f"{label}: tools {record.tools} != expected {expect.tools}")
    reply = (record.reply or "").casefold()
    failures += [f"{label}: reply lacks {t!r}" for t in _missing(expect.reply_contains, reply)]
    failures += [f"{label}: reply contains {t!r}" for t in _present(expect.reply_excludes, reply)]
    return failures


def _missing(texts: list[str], haystack: str) -> list[str]:
    return [text for text in texts if text.casefold() not in haystack]


def _present(texts: list[str], haystack: str) -> list[str]:
    return [text for text in texts if text.casefold() in haystack]


def _check_pets(session: Session, scenario: Scenario, world: World) -> list[str]:
    expected = scenario.end.pets
    if expected is None:
        return []
    pets = {
        pet.name: pet
        for pet in session.exec(
            select(Pet).where(
                Pet.organization_id == world.org_id, Pet.contact_id == world.contact_id
            )
        )
    }
    failures = []
    if sorted(pets) != sorted(want.name for want in expected):
        failures.append(f"pets {sorted(pets)} != expected {sorted(w.name for w in expected)}")
    for want in expected:
        pet = pets.get(want.name)
        for attr in ("species", "breed", "age_years"):
            value = getattr(want, attr)
            if pet is not None and value is not None and getattr(pet, attr) != value:
                failures.append(f"pet {want.name}: {attr} {getattr(pet, attr)!r} != {value!r}")
    return failures


def _check_appointments(
    session: Session,
    world: World,
    contact_id: int,
    expected: list[AppointmentExpect] | None,
    label: str = "appointments",
) -> list[str]:
    if expected is None:
        return []
    found_rows = session.exec(
        select(Appointment, Service.name, Pet.name)
        .join(Service, col(Service.id) == col(Appointment.service_id))
        .outerjoin(Pet, col(Pet.id) == col(Appointment.pet_id))
        .where(Appointment.organization_id == world.org_id, Appointment.contact_id == contact_id)
        .order_by(col(Appointment.starts_at), col(Appointment.id))
    ).all()
    zone = world.zone
    found = [
        (pet, service, f"{row.starts_at.astimezone(zone):%Y-%m-%dT%H:%M}", str(row.status))
        for row, service, pet in found_rows
    ]
    wanted = [
        (w.pet, w.service, f"{local(w.start, zone).astimezone(zone):%Y-%m-%dT%H:%M}", w.status)
        for w in expected
    ]
    prices_ok = all(
        w.price is None or parse_price(w.price) == row.price_cents
        for w, (row, _, _) in zip(expected, found_rows, strict=False)
    )
    if found != wanted or not prices_ok:
        prices = [format_brl(row.price_cents) for row, _, _ in found_rows]
        shown = [(*item, price) for item, price in zip(found, prices, strict=True)]
        return [f"{label} {shown} != expected {wanted}"]
    return []


def _check_clients(session: Session, scenario: Scenario, world: World) -> list[str]:
    failures: list[str] = []
    for name, want in scenario.end.clients.items():
        contact_id = world.clients.get(name)
        if contact_id is None:
            failures.append(f"no client named {name!r} in setup.others")
            continue
        failures += _check_appointments(
            session, world, contact_id, want.appointments, f"{name}'s appointments"
        )
        conversation = session.exec(
            select(Conversation)
            .where(
                Conversation.organization_id == world.org_id, Conversation.contact_id == contact_id
            )
            .order_by(col(Conversation.id).desc())
        ).first()
        status = conversation.status if conversation else None
        if want.conversation is not None and status != want.conversation:
            failures.append(f"{name}'s conversation {status!r} != expected {want.conversation!r}")
        outbox = [
            m.content
            for m in session.exec(
                select(Message)
                .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
                .where(
                    Message.organization_id == world.org_id,
                    Conversation.contact_id == contact_id,
                    Message.direction == "outgoing",
                )
            )
        ]
        failures += [
            f"no message to {name} contains {text!r}"
            for text in want.outbox_contains
            if not any(text.casefold() in m.casefold() for m in outbox)
        ]
    return failures


def _check_owner_records(session: Session, scenario: Scenario, world: World) -> list[str]:
    end, failures = scenario.end, []
    if end.audit is not None:
        actions = list(
            session.exec(
                select(AuditLog.action)
                .where(AuditLog.organization_id == world.org_id)
                .order_by(col(AuditLog.id))
            )
        )
        if actions != end.audit:
            failures.append(f"audit {actions} != expected {end.audit}")
    if end.proposals is not None:
        statuses = list(
            session.exec(
                select(AuroraPendingAction.status)
                .where(AuroraPendingAction.organization_id == world.org_id)
                .order_by(col(AuroraPendingAction.id))
            )
        )
        if statuses != end.proposals:
            failures.append(f"proposals {statuses} != expected {end.proposals}")
    return failures


def _check_handoff(session: Session, scenario: Scenario, world: World) -> list[str]:
    """The conversation's status and escalation reason, and the owners' alerts about it."""
    end, failures = scenario.end, []
    conversation = session.get(Conversation, world.context.conversation_id)
    status = conversation.status if conversation else None
    if end.conversation is not None and status != end.conversation:
        failures.append(f"conversation {status!r} != expected {end.conversation!r}")
    reason = (conversation.escalation_reason if conversation else None) or ""
    if end.escalation_reason is not None and end.escalation_reason.casefold() not in (
        reason.casefold()
    ):
        failures.append(f"escalation reason {reason!r} lacks {end.escalation_reason!r}")
    if end.alerts is not None:
        query = select(func.count()).where(
            AuroraProactiveMessage.organization_id == world.org_id,
            AuroraProactiveMessage.contact_id == world.contact_id,
            AuroraProactiveMessage.message_type == ALERT,
        )
        alerts = int(session.exec(query).one())
        if alerts != end.alerts:
            failures.append(f"{alerts} escalation alerts queued, expected {end.alerts}")
    if end.opted_out is not None:
        contact = session.get(Contact, world.contact_id)
        opted_out = contact is not None and contact.opted_out_at is not None
        if opted_out != end.opted_out:
            failures.append(f"opted out is {opted_out}, expected {end.opted_out}")
    return failures


def check_end(session: Session, scenario: Scenario, world: World, run: ScenarioRun) -> list[str]:
    """The end state: rows, conversations, audit, replies, ungrounded facts and errors."""
    end = scenario.end
    failures = _check_pets(session, scenario, world)
    failures += _check_appointments(session, world, world.contact_id, end.appointments)
    failures += _check_clients(session, scenario, world) + _check_owner_records(
        session, scenario, world
    )
    failures += _check_handoff(session, scenario, world)
    for ref in end.untouched:
        row = session.get(Appointment, world.refs[ref])
        if row is None or (row.status, row.starts_at) != world.snapshot[ref]:
            failures.append(f"appointment {ref} of another customer was changed")
    joined = "\n".join(t.reply for t in run.turns if t.reply).casefold()
    failures += [f"no reply contains {t!r}" for t in _missing(end.replies_contain, joined)]
    failures += [f"a reply contains {t!r}" for t in _present(end.replies_exclude, joined)]
    facts = [fact for turn in run.turns for fact in turn.ungrounded]
    if len(facts) > end.max_ungrounded:
        failures.append(f"{len(facts)} ungrounded facts in replies: {facts}")
    errors = sum(1 for turn in run.turns if turn.error)
    if errors != end.errors:
        failures.append(f"{errors} turns ended in a model error (expected {end.errors})")
    return failures
