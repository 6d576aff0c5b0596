"""Run one scenario against a real database: set up rows, play the turns, check the end state.

Each run applies the scenario's organization under a unique slug (so runs can share one
database and never see each other), plays every turn through the client graph with a
frozen clock, and deletes the organization afterwards.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from zapvet import db
from zapvet.bridge.identity import normalise_phone, phone_key
from zapvet.evals.scenario import (
    AppointmentExpect,
    AppointmentRow,
    ModelStep,
    Person,
    Scenario,
    Setup,
    Turn,
)
from zapvet.graphs.aurora.graph import build_graph as build_aurora_graph
from zapvet.graphs.client.graph import build_graph as build_client_graph
from zapvet.graphs.turn import run_turn
from zapvet.llm.scripted import ScriptedChatModel
from zapvet.llm.tokens import count_tokens
from zapvet.models import (
    Appointment,
    AuditLog,
    AuroraOwnerNumber,
    AuroraPendingAction,
    BusinessHours,
    Contact,
    Conversation,
    Message,
    Organization,
    Pet,
    Resource,
    ResourceService,
    Service,
)
from zapvet.money import format_brl, parse_price
from zapvet.org import apply_spec, load_spec
from zapvet.org.spec import OrgSpec
from zapvet.tools.context import AuroraContext, ClientContext
from zapvet.tools.deps import ToolDeps

_REF = re.compile(r"\$\{(\w+)\}")
ModelFactory = Callable[[], BaseChatModel]


@dataclass
class TurnRecord:
    user: list[str]
    reply: str | None
    tools: list[str]
    ungrounded: list[str]
    error: str | None
    prompt_tokens: list[int]
    static_tokens: int


@dataclass
class ScenarioRun:
    """The outcome of one run: `failures` lists every expectation that did not hold."""

    name: str
    failures: list[str] = field(default_factory=list)
    turns: list[TurnRecord] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def _unique_spec(spec: OrgSpec, token: str) -> OrgSpec:
    org = spec.organization.model_copy(update={"slug": f"{spec.organization.slug}-{token}"})
    whatsapp = [
        entry.model_copy(
            update={"instance": f"{entry.instance}-{token}"}
            if entry.provider == "evolution"
            else {"phone_number_id": f"{entry.phone_number_id}-{token}"}
        )
        for entry in spec.whatsapp
    ]
    return spec.model_copy(update={"organization": org, "whatsapp": whatsapp})


@dataclass
class _World:
    org_id: int
    zone: ZoneInfo
    context: ClientContext | AuroraContext
    contact_id: int
    refs: dict[str, int]
    snapshot: dict[str, tuple[Any, datetime]]
    clients: dict[str, int]


def _local(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


class _Builder:
    """Writes a scenario's setup rows in one organization."""

    def __init__(self, session: Session, org: Organization) -> None:
        assert org.id is not None
        self.session, self.org_id, self.zone = session, org.id, ZoneInfo(org.timezone)
        self.refs: dict[str, int] = {}

    def service(self, name: str) -> Service:
        found = self.session.exec(
            select(Service).where(Service.organization_id == self.org_id, Service.name == name)
        ).first()
        if found is None:
            raise ValueError(f"setup names unknown service {name!r}")
        return found

    def resource_for(self, service: Service, name: str | None) -> Resource:
        query = select(Resource).where(Resource.organization_id == self.org_id)
        if name:
            query = query.where(Resource.name == name)
        else:
            query = query.join(
                ResourceService, col(ResourceService.resource_id) == col(Resource.id)
            ).where(ResourceService.service_id == service.id)
        found = self.session.exec(query.order_by(col(Resource.id))).first()
        if found is None:
            raise ValueError(f"no resource {name or 'performs ' + service.name!r}")
        return found

    def person(self, person: Person, pets: list[Any], appointments: list[AppointmentRow]) -> int:
        contact = Contact(organization_id=self.org_id, phone=person.phone, name=person.name)
        self.session.add(contact)
        self.session.flush()
        assert contact.id is not None
        by_name: dict[str, int] = {}
        for row in pets:
            pet = Pet(organization_id=self.org_id, contact_id=contact.id, **row.model_dump())
            self.session.add(pet)
            self.session.flush()
            assert pet.id is not None
            by_name[row.name] = pet.id
        for row in appointments:
            service = self.service(row.service)
            resource = self.resource_for(service, row.resource)
            start = _local(row.start, self.zone)
            appointment = Appointment(
                organization_id=self.org_id,
                contact_id=contact.id,
                pet_id=by_name[row.pet] if row.pet else None,
                service_id=service.id or 0,
                resource_id=resource.id or 0,
                starts_at=start,
                ends_at=start + timedelta(minutes=service.duration_minutes),
                status=row.status,
                price_cents=service.price_cents,
                source="import",
            )
            self.session.add(appointment)
            self.session.flush()
            if row.ref:
                self.refs[row.ref] = appointment.id or 0
        return contact.id

    def conversation(self, contact_id: int, status: str, reason: str | None, now: datetime) -> int:
        conversation = Conversation(
            organization_id=self.org_id,
            contact_id=contact_id,
            status=status,  # type: ignore[arg-type]
            escalation_reason=reason,
            escalated_at=now if status == "escalated" else None,
        )
        self.session.add(conversation)
        self.session.flush()
        return conversation.id or 0

    def busy(self, setup: Setup) -> None:
        if not setup.busy:
            return
        filler = self.person(Person(phone="5500000000000", name="Agenda cheia"), [], [])
        for day in setup.busy:
            resource = self.session.exec(
                select(Resource).where(
                    Resource.organization_id == self.org_id, Resource.name == day.resource
                )
            ).one()
            link = self.session.exec(
                select(ResourceService).where(ResourceService.resource_id == resource.id)
            ).first()
            assert link is not None and resource.id is not None
            hours = self.session.exec(
                select(BusinessHours).where(
                    BusinessHours.organization_id == self.org_id,
                    BusinessHours.weekday == day.date.weekday(),
                )
            )
            for interval in hours:
                start = datetime.combine(day.date, interval.opens_at, tzinfo=self.zone)
                end = datetime.combine(day.date, interval.closes_at, tzinfo=self.zone)
                for _ in range(resource.capacity):
                    self.session.add(
                        Appointment(
                            organization_id=self.org_id,
                            contact_id=filler,
                            service_id=link.service_id,
                            resource_id=resource.id,
                            starts_at=start,
                            ends_at=end,
                            price_cents=0,
                            source="import",
                        )
                    )
        self.session.flush()


def _setup(engine: Engine, scenario: Scenario, token: str) -> _World:
    spec = _unique_spec(load_spec(scenario.org_path()), token)
    with Session(engine, expire_on_commit=False) as session:
        org_id = apply_spec(session, spec).organization_id
        org = session.get(Organization, org_id)
        assert org is not None
        builder = _Builder(session, org)
        setup = scenario.setup
        contact_id = builder.person(scenario.contact, setup.pets, setup.appointments)
        clients: dict[str, int] = {}
        for other in setup.others:
            clients[other.name or other.phone] = other_id = builder.person(
                other, other.pets, other.appointments
            )
            if other.conversation:
                builder.conversation(
                    other_id, other.conversation, other.escalation_reason, scenario.now
                )
        builder.busy(setup)
        conversation_id = builder.conversation(contact_id, setup.conversation, None, scenario.now)
        context: ClientContext | AuroraContext = ClientContext(
            organization_id=org_id, contact_id=contact_id, conversation_id=conversation_id
        )
        if scenario.agent == "aurora":
            key = phone_key(normalise_phone(scenario.contact.phone))
            owner = session.exec(
                select(AuroraOwnerNumber).where(
                    AuroraOwnerNumber.organization_id == org_id,
                    AuroraOwnerNumber.phone_key == key,
                )
            ).first()
            if owner is None:
                raise ValueError("an aurora scenario's contact must be an owner number of the org")
            context = AuroraContext(
                organization_id=org_id,
                owner_number_id=owner.id or 0,
                contact_id=contact_id,
                conversation_id=conversation_id,
            )
        session.commit()
        snapshot = {
            ref: (row.status, row.starts_at)
            for ref, row in (
                (ref, session.get(Appointment, id_)) for ref, id_ in builder.refs.items()
            )
            if row is not None
        }
        return _World(
            org_id=org_id,
            zone=builder.zone,
            context=context,
            contact_id=contact_id,
            refs=builder.refs,
            snapshot=snapshot,
            clients=clients,
        )


def _resolve(value: Any, refs: dict[str, int]) -> Any:
    """Replace `${ref}` in scripted arguments with the ids the setup created."""
    if isinstance(value, str):
        whole = _REF.fullmatch(value)
        if whole:
            return refs[whole[1]]
        return _REF.sub(lambda m: str(refs[m[1]]), value)
    if isinstance(value, dict):
        return {k: _resolve(v, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, refs) for v in value]
    return value


def scripted_reply(step: ModelStep, refs: dict[str, int]) -> AIMessage | Exception:
    """One scripted model output as the scripted model plays it."""
    if step.error is not None:
        return TimeoutError(step.error) if "timeout" in step.error else RuntimeError(step.error)
    calls = [
        {"name": c.name, "args": _resolve(c.args, refs), "id": None, "type": "tool_call"}
        for c in step.tool_calls()
    ]
    return AIMessage(step.say or "", tool_calls=calls)


def _check_turn(index: int, turn: Turn, record: TurnRecord, scripted: bool) -> list[str]:
    failures = []
    label = f"turn {index + 1}"
    expect = turn.expect
    if expect.silent and record.reply is not None:
        failures.append(f"{label}: expected silence, got a reply")
    if not scripted:
        return failures
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


def _check_pets(session: Session, scenario: Scenario, world: _World) -> list[str]:
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
    world: _World,
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
        (w.pet, w.service, f"{_local(w.start, zone).astimezone(zone):%Y-%m-%dT%H:%M}", w.status)
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


def _check_clients(session: Session, scenario: Scenario, world: _World) -> list[str]:
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


def _check_owner_records(session: Session, scenario: Scenario, world: _World) -> list[str]:
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


def _check_end(session: Session, scenario: Scenario, world: _World, run: ScenarioRun) -> list[str]:
    end = scenario.end
    failures = _check_pets(session, scenario, world)
    failures += _check_appointments(session, world, world.contact_id, end.appointments)
    failures += _check_clients(session, scenario, world) + _check_owner_records(
        session, scenario, world
    )
    if end.conversation is not None:
        conversation = session.get(Conversation, world.context.conversation_id)
        status = conversation.status if conversation else None
        if status != end.conversation:
            failures.append(f"conversation {status!r} != expected {end.conversation!r}")
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


async def run_scenario(
    scenario: Scenario, database_url: str, *, model_factory: ModelFactory | None = None
) -> ScenarioRun:
    """Play `scenario` on the (migrated) database at `database_url`.

    With no `model_factory` the scenario's scripted model outputs are played; otherwise the
    factory's model answers and only the end state and facts are checked.
    """
    run = ScenarioRun(name=scenario.name)
    token = uuid.uuid4().hex[:8]
    engine = db.build_engine(database_url, pool_size=1)
    async_engine = db.build_async_engine(database_url, pool_size=3)
    world: _World | None = None
    try:
        world = _setup(engine, scenario, token)
        scripted = model_factory is None
        model: BaseChatModel = ScriptedChatModel() if scripted else model_factory()  # type: ignore[misc]
        clock = [scenario.now.astimezone(UTC)]
        deps = ToolDeps(sessions=db.async_session_maker(async_engine), clock=lambda: clock[0])
        builder = build_aurora_graph if scenario.agent == "aurora" else build_client_graph
        graph = builder(model, deps)
        history: list[BaseMessage] = []
        for index, turn in enumerate(scenario.turns):
            if turn.at is not None:
                clock[0] = turn.at.astimezone(UTC)
            if isinstance(model, ScriptedChatModel):
                model.add(*(scripted_reply(step, world.refs) for step in turn.model))
            history += [HumanMessage(text) for text in turn.texts()]
            result = await run_turn(graph, world.context, history)
            produced = [m for m in result.messages if isinstance(m, AIMessage) and m.usage_metadata]
            record = TurnRecord(
                user=turn.texts(),
                reply=result.reply,
                tools=[str(m.name) for m in result.messages if isinstance(m, ToolMessage)],
                ungrounded=result.ungrounded,
                error=result.error,
                prompt_tokens=[
                    m.usage_metadata["input_tokens"] for m in produced if m.usage_metadata
                ],
                static_tokens=count_tokens(result.system_prompt),
            )
            run.turns.append(record)
            run.failures += _check_turn(index, turn, record, scripted)
            if isinstance(model, ScriptedChatModel) and model.remaining:
                run.failures.append(f"turn {index + 1}: {model.remaining} scripted outputs unused")
                model.script[:] = model.script[: len(model.script) - model.remaining]
            if result.reply is not None:
                history.append(AIMessage(result.reply))
        with Session(engine) as session:
            run.failures += _check_end(session, scenario, world, run)
    except Exception as error:  # a crashing scenario is a failed run, reported, not raised
        run.failures.append(f"crashed: {type(error).__name__}: {error}")
    finally:
        if world is not None:
            with Session(engine) as session:
                org = session.get(Organization, world.org_id)
                if org is not None:
                    session.delete(org)
                    session.commit()
        engine.dispose()
        await async_engine.dispose()
    return run
