"""The model as an attacker: whatever it answers, each customer turn gets exactly one reply,
nobody else's rows change, and nothing crashes or runs the turn twice.

The model is a real OpenAI-compatible server on loopback speaking the wire format to the
production client (ChatOpenAI). It reads the tool schemas sent with each request and
answers with attacker-chosen texts and tool calls: broken Unicode, empty or cut-short
answers, an escalation followed by a reply that cannot be stored, numbers and dates out of
range, tools it was not offered, arguments that are not JSON, floods of calls in one
message, endless tool loops, identities smuggled into arguments, and every offered tool
called with hostile values derived from its own schema. One class of attack per test.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from langchain_openai import ChatOpenAI
from sqlalchemy import Engine, text
from sqlalchemy import exc as sa_exc
from sqlmodel import Session, select

from tests.conftest import second_shop, start_conversation
from tests.faults.conftest import local_stack
from tests.pipeline.support import Recorder, purge
from tests.security.conftest import org_snapshot
from zapvet.bridge.splitting import DEFAULT_LIMIT, split_text
from zapvet.cleaning import MAX_TEXT_CHARS, clean_text
from zapvet.embedded import ServiceUrls
from zapvet.graphs.loop import FALLBACK_REPLY, HANDOFF_REPLY, LAST_STEP_REPLY, STEP_LIMIT_ERROR
from zapvet.graphs.tool_guard import MAX_CALLS_PER_MESSAGE
from zapvet.models import (
    Appointment,
    AuroraOwnerNumber,
    Contact,
    ContactIdentity,
    Conversation,
    Message,
    Organization,
    Pet,
    Resource,
    Service,
)
from zapvet.queue import drain
from zapvet.queue.drain import Outcome, drain_conversation
from zapvet.queue.resources import Resources, build_resources
from zapvet.testing.openai_server import FakeOpenAIServer, Reply, ToolCall

# Slow: every probe drains a whole turn against a fake model over HTTP.
pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ANA = "5511970001234"  # the customer whose conversation the hostile model answers
BIA = "5511970005678"  # another customer of the same shop
ZED = "5521970009999"  # a customer of another shop
CLOSING = "Pronto! Posso ajudar em mais alguma coisa?"
INTERNAL_ERROR = "Erro interno"

Play = Reply | Callable[[dict[str, Any]], Reply]


class Attacker:
    """The model's answers: scripted plays in order, then a harmless closing text."""

    def __init__(self) -> None:
        self.plays: deque[Play] = deque()

    def __call__(self, body: dict[str, Any]) -> Reply:
        if not self.plays:
            return Reply(CLOSING)
        play = self.plays.popleft()
        return play(body) if callable(play) else play


def offered(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tools the request offers the model: name → JSON schema of the arguments."""
    return {t["function"]["name"]: t["function"]["parameters"] for t in body.get("tools") or []}


def tool_answers(body: dict[str, Any]) -> list[str]:
    """The tool results the model is shown in a request, in order."""
    return [str(m["content"]) for m in body["messages"] if m["role"] == "tool"]


@dataclass
class Arena:
    """One shop with the attacked customer, a bystander customer, its owner, and a second
    shop; the worker's resources on a hostile model; drains run as the worker runs them."""

    res: Resources
    model: FakeOpenAIServer
    attacker: Attacker
    engine: Engine
    org_id: int
    other_org_id: int
    customer_conversation: int
    owner_conversation: int
    mine: list[int]
    queue: Recorder = field(default_factory=Recorder)

    def script(self, *plays: Play) -> None:
        self.attacker.plays.extend(plays)

    async def turn(self, text_: str, *, owner: bool = False) -> Outcome:
        """The customer (or the owner) writes `text_`; one drain answers it."""
        conversation_id = self.owner_conversation if owner else self.customer_conversation
        moment = datetime.now(UTC) - timedelta(minutes=1)  # past the debounce window
        with Session(self.engine) as session:
            session.add(
                Message(
                    organization_id=self.org_id,
                    conversation_id=conversation_id,
                    direction="incoming",
                    content=text_,
                    status="pending",
                    message_at=moment,
                    created_at=moment,
                    updated_at=moment,
                )
            )
            session.commit()
        return await drain_conversation(self.res, self.queue, conversation_id)

    def replies(self, *, owner: bool = False) -> list[str]:
        conversation_id = self.owner_conversation if owner else self.customer_conversation
        return self.scalars(
            "SELECT content FROM messages WHERE conversation_id = :c AND direction = 'outgoing'"
            " ORDER BY id",
            c=conversation_id,
        )

    def interactions(self) -> list[tuple[str, str | None]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT status, error_message FROM ai_interactions ORDER BY id")
            )
            return [(row[0], row[1]) for row in rows]

    def scalars(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return [row[0] for row in conn.execute(text(sql), params)]

    def bystanders(self) -> dict[str, Any]:
        """Every row of the other shop, and the other customers' rows of this one."""
        mine = {"mine": self.mine}
        others = "contact_id <> ALL(:mine)"
        queries = {
            "contacts": "SELECT * FROM contacts WHERE id <> ALL(:mine) ORDER BY id",
            "pets": f"SELECT * FROM pets WHERE {others} ORDER BY id",
            "appointments": f"SELECT * FROM appointments WHERE {others} ORDER BY id",
            "conversations": f"SELECT * FROM conversations WHERE {others} ORDER BY id",
            "messages": "SELECT m.* FROM messages m JOIN conversations c"
            f" ON c.id = m.conversation_id WHERE c.{others} ORDER BY m.id",
        }
        with self.engine.connect() as conn:
            found: dict[str, Any] = {
                name: [tuple(row) for row in conn.execute(text(sql), mine)]
                for name, sql in queries.items()
            }
        found["other organization"] = org_snapshot(self.engine, self.other_org_id)
        return found


def _client_with_booking(session: Session, org: Organization, phone: str, pet_name: str) -> None:
    context = start_conversation(session, org, phone)
    pet = Pet(
        organization_id=org.id or 0, contact_id=context.contact_id, name=pet_name, species="gato"
    )
    session.add(pet)
    session.flush()
    service = session.exec(select(Service).where(Service.organization_id == org.id)).first()
    resource = session.exec(select(Resource).where(Resource.organization_id == org.id)).first()
    assert service is not None and resource is not None
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    session.add(
        Appointment(
            organization_id=org.id or 0,
            contact_id=context.contact_id,
            pet_id=pet.id,
            service_id=service.id or 0,
            resource_id=resource.id or 0,
            starts_at=start,
            ends_at=start + timedelta(minutes=service.duration_minutes),
            status="scheduled",
            price_cents=service.price_cents,
            source="staff",
        )
    )
    session.commit()


def _owner_conversation(session: Session, org: Organization) -> tuple[int, int]:
    owner = session.exec(
        select(AuroraOwnerNumber).where(AuroraOwnerNumber.organization_id == org.id)
    ).first()
    assert owner is not None
    contact = Contact(organization_id=org.id or 0, phone=owner.phone, name=owner.name)
    session.add(contact)
    session.flush()
    session.add(
        ContactIdentity(
            organization_id=org.id or 0,
            contact_id=contact.id or 0,
            kind="phone",
            value=owner.phone_key,
        )
    )
    conversation = Conversation(organization_id=org.id or 0, contact_id=contact.id or 0)
    session.add(conversation)
    session.commit()
    return contact.id or 0, conversation.id or 0


@pytest.fixture
def hostile() -> Iterator[tuple[FakeOpenAIServer, Attacker]]:
    attacker = Attacker()
    with FakeOpenAIServer(responder=attacker) as server:
        yield server, attacker


@pytest.fixture
async def arena(
    database_url: str,
    engine: Engine,
    session: Session,
    petfeliz: Organization,
    hostile: tuple[FakeOpenAIServer, Attacker],
) -> AsyncIterator[Arena]:
    server, attacker = hostile
    other = second_shop(session)
    _client_with_booking(session, other, ZED, "Xerxes")
    _client_with_booking(session, petfeliz, BIA, "Bolinha")
    customer = start_conversation(session, petfeliz, ANA)
    session.add(
        Pet(
            organization_id=petfeliz.id or 0,
            contact_id=customer.contact_id,
            name="Rex",
            species="cachorro",
        )
    )
    session.commit()
    owner_contact, owner_conversation = _owner_conversation(session, petfeliz)
    model = ChatOpenAI(
        model="gpt-4o-mini",
        api_key="test-key",  # type: ignore[arg-type]
        base_url=server.base_url,
        max_retries=0,
    )
    res = build_resources(database_url, lambda: model, pool_size=4)
    yield Arena(
        res=res,
        model=server,
        attacker=attacker,
        engine=engine,
        org_id=petfeliz.id or 0,
        other_org_id=other.id or 0,
        customer_conversation=customer.conversation_id,
        owner_conversation=owner_conversation,
        mine=[customer.contact_id, owner_contact],
    )
    await res.close()


def assert_one_reply(arena: Arena, expected: str, *, owner: bool = False) -> None:
    replies = arena.replies(owner=owner)
    assert replies == [expected]
    outgoing = arena.scalars("SELECT id FROM messages WHERE direction = 'outgoing'")
    assert arena.queue.sends == outgoing  # exactly that reply goes to the gateway


# -- what the model says -------------------------------------------------------------------

UNSTORABLE = {
    "nul": "Olá\x00! Seu horário está confirmado.",
    "lone surrogates": "Oi \ud83d tudo bem? \ud83d\udc36 Até amanhã\ude00!",
    "bidi and terminal controls": "Total: \u202eR$ 021,00\u202c \x1b[2J\x07 pronto\ufeff",
    "separators and CR": "linha 1\r\nlinha 2\u2028linha 3\x85fim",
    "decomposed accents": "Vacinac\u0327a\u0303o marcada",
    "long, with a NUL": ("Resposta longa e válida. " * 2000) + "\x00fim",
}


@pytest.mark.parametrize("raw", list(UNSTORABLE.values()), ids=list(UNSTORABLE))
async def test_hostile_model_reply_with_unstorable_text_is_cleaned_and_sent_once(
    arena: Arena, raw: str
) -> None:
    before = arena.bystanders()
    arena.script(Reply(raw))
    assert await arena.turn("Oi, tudo bem?") is Outcome.ANSWERED
    expected = clean_text(raw)
    assert expected and expected != raw
    assert_one_reply(arena, expected)
    assert len(expected) <= MAX_TEXT_CHARS
    assert all(len(part) <= DEFAULT_LIMIT for part in split_text(expected))
    assert len(arena.model.requests) == 1  # the turn ran once: no retry re-ran the model
    assert arena.interactions() == [("success", None)]
    assert arena.bystanders() == before


EMPTY = {
    "content null": (Reply(None), "empty"),
    "empty string": (Reply(""), "empty"),
    "blank": (Reply("  \n\t "), "empty"),
    "only invisible characters": (Reply("\x00\u202e\ud800\ufeff"), "empty"),
    "content filter, no text": (Reply(None, finish_reason="content_filter"), "content_filter"),
    "content filter, partial text": (
        Reply("Para tratar a ferida use", finish_reason="content_filter"),
        "content_filter",
    ),
    "token limit": (Reply("A consulta custa R$", finish_reason="length"), "finish_reason=length"),
}


@pytest.mark.parametrize(("reply", "reason"), list(EMPTY.values()), ids=list(EMPTY))
async def test_hostile_model_empty_or_cut_short_answer_gets_the_fallback_and_an_error_row(
    arena: Arena, reply: Reply, reason: str
) -> None:
    arena.script(reply)
    assert await arena.turn("Quanto custa a consulta?") is Outcome.ANSWERED
    assert_one_reply(arena, FALLBACK_REPLY)
    ((status, error),) = arena.interactions()
    assert status == "error" and reason in str(error)


async def test_hostile_model_empty_answer_to_the_owner_gets_the_fallback_too(arena: Arena) -> None:
    arena.script(Reply(None, finish_reason="content_filter"))
    assert await arena.turn("Quantos clientes atendi hoje?", owner=True) is Outcome.ANSWERED
    assert_one_reply(arena, FALLBACK_REPLY, owner=True)
    assert [status for status, _ in arena.interactions()] == ["error"]


# -- escalations ---------------------------------------------------------------------------


def _escalation_alerts(arena: Arena) -> list[str]:
    return arena.scalars(
        "SELECT content FROM aurora_proactive_messages WHERE message_type = 'escalation_alert'"
    )


async def test_hostile_model_escalation_then_unstorable_reply_alerts_a_person_and_answers(
    arena: Arena,
) -> None:
    reason = "cão \x00vomitando sangue \u202e urgente"
    arena.script(
        Reply(tool_calls=[ToolCall("escalate_to_human", {"reason": reason})]),
        Reply("Já chamei a equipe!\x00\ud83d"),
    )
    assert await arena.turn("Meu cachorro está vomitando sangue") is Outcome.ANSWERED
    assert_one_reply(arena, "Já chamei a equipe!")
    assert arena.scalars(
        "SELECT status || ':' || escalation_reason FROM conversations WHERE id = :c",
        c=arena.customer_conversation,
    ) == ["escalated:" + clean_text(reason)]
    (alert,) = _escalation_alerts(arena)
    assert clean_text(reason) in alert
    assert arena.queue.proactive_ids == arena.scalars("SELECT id FROM aurora_proactive_messages")


def _failing_once(monkeypatch: pytest.MonkeyPatch, error: Exception) -> Callable[..., Any]:
    """Make the next reply commit of the drain fail with `error` (then work as before)."""
    real = drain._write
    failures = [error]

    async def write(session: Any, conversation: Any, pending: Any, turn: Any, *rest: Any) -> Any:
        if failures and turn.failure is None:
            raise failures.pop()
        return await real(session, conversation, pending, turn, *rest)

    monkeypatch.setattr(drain, "_write", write)
    return write


async def test_hostile_model_escalation_whose_reply_commit_fails_for_good_still_answers_once(
    arena: Arena, monkeypatch: pytest.MonkeyPatch
) -> None:
    arena.script(
        Reply(tool_calls=[ToolCall("escalate_to_human", {"reason": "quer falar com alguém"})]),
        Reply("Vou chamar alguém."),
    )
    unstorable = sa_exc.DataError("INSERT INTO messages …", {}, Exception("invalid byte sequence"))
    _failing_once(monkeypatch, unstorable)
    assert await arena.turn("Quero falar com uma pessoa") is Outcome.GAVE_UP
    assert_one_reply(arena, HANDOFF_REPLY)  # at once: the turn was not run again
    assert len(arena.model.requests) == 2
    assert len(_escalation_alerts(arena)) == 1
    assert arena.queue.proactive_ids == arena.scalars("SELECT id FROM aurora_proactive_messages")
    assert arena.scalars("SELECT status FROM messages WHERE direction = 'incoming'") == ["failed"]
    (last_status, last_error) = arena.interactions()[-1]
    assert last_status == "error" and "could not be stored: DataError" in str(last_error)


async def test_hostile_model_escalation_whose_commit_fails_transiently_answers_on_the_retry(
    arena: Arena, monkeypatch: pytest.MonkeyPatch
) -> None:
    arena.script(
        Reply(tool_calls=[ToolCall("escalate_to_human", {"reason": "reclamação"})]),
        Reply("Vou chamar alguém."),
    )
    dropped = sa_exc.OperationalError("INSERT", {}, Exception("server closed the connection"))
    _failing_once(monkeypatch, dropped)
    with pytest.raises(sa_exc.OperationalError):  # the actor retries it after 2 s
        await arena.turn("Quero reclamar")
    assert len(_escalation_alerts(arena)) == 1  # the person was told already
    assert await drain_conversation(arena.res, arena.queue, arena.customer_conversation) is (
        Outcome.ANSWERED
    )
    assert_one_reply(arena, HANDOFF_REPLY)
    assert len(arena.model.requests) == 2  # the retry did not ask the model again
    assert len(_escalation_alerts(arena)) == 1


async def test_hostile_model_endless_tool_loop_ends_with_one_reply_and_a_real_handoff(
    arena: Arena,
) -> None:
    arena.script(*[Reply(tool_calls=[ToolCall("list_services")])] * 50)
    assert await arena.turn("Oi") is Outcome.ANSWERED
    assert_one_reply(arena, LAST_STEP_REPLY)
    assert len(arena.model.requests) < 15
    assert arena.interactions() == [("error", STEP_LIMIT_ERROR)]
    # The reply promises a person: the conversation is escalated and the owner alerted.
    assert arena.scalars(
        "SELECT status FROM conversations WHERE id = :c", c=arena.customer_conversation
    ) == ["escalated"]
    assert len(_escalation_alerts(arena)) == 1


# -- what the model asks tools to do -------------------------------------------------------

OUT_OF_RANGE = {
    "id of 2^63": (ToolCall("cancel_appointment", {"appointment_id": 2**63}), "Não existe"),
    "id below -2^63": (
        ToolCall("cancel_appointment", {"appointment_id": -(2**63) - 5}),
        "Não existe",
    ),
    "huge id in a reschedule": (
        ToolCall(
            "reschedule_appointment",
            {"appointment_id": 2**80, "new_date": "2030-01-10", "new_time": "10:00"},
        ),
        "Não existe",
    ),
    "year 9999": (ToolCall("check_availability", {"date": "9999-12-31"}), "Data fora"),
    "year 1": (ToolCall("check_availability", {"date": "0001-01-01"}), "Data fora"),
    "year 2101 booking": (
        ToolCall(
            "book_appointment",
            {
                "pet_name": "Rex",
                "service_type": "consulta",
                "preferred_date": "2101-01-03",
                "preferred_time": "10:00",
            },
        ),
        "Data fora",
    ),
    "time 25:99": (
        ToolCall(
            "book_appointment",
            {
                "pet_name": "Rex",
                "service_type": "consulta",
                "preferred_date": "2030-01-10",
                "preferred_time": "25:99",
            },
        ),
        "Horário inválido",
    ),
    "ISO week date": (ToolCall("check_availability", {"date": "2030-W02-3"}), "Data inválida"),
    "huge age": (
        ToolCall("register_pet", {"name": "Tobias", "species": "gato", "age_years": 2**70}),
        "Não existe",
    ),
    "name longer than the column": (
        ToolCall("register_pet", {"name": "Rex" * 2000, "species": "cachorro"}),
        "inválido",
    ),
    "id that is not a number": (
        ToolCall("cancel_appointment", {"appointment_id": "um"}),
        "Argumentos inválidos",
    ),
}


@pytest.mark.parametrize(("call", "refusal"), list(OUT_OF_RANGE.values()), ids=list(OUT_OF_RANGE))
async def test_hostile_model_out_of_range_arguments_are_refused_in_plain_portuguese(
    arena: Arena, call: ToolCall, refusal: str
) -> None:
    before = arena.bystanders()
    pets = arena.scalars("SELECT name FROM pets ORDER BY id")
    arena.script(Reply(tool_calls=[call]))
    assert await arena.turn("Faça isso") is Outcome.ANSWERED
    (answer,) = tool_answers(arena.model.requests[-1].body)
    assert refusal in answer and INTERNAL_ERROR not in answer
    assert_one_reply(arena, CLOSING)
    assert arena.interactions() == [("success", None)]
    assert arena.scalars("SELECT name FROM pets ORDER BY id") == pets  # nothing registered
    assert arena.bystanders() == before


OWNER_OUT_OF_RANGE = {
    "summary of year 9999": ToolCall(
        "business_summary", {"start_date": "9999-01-01", "end_date": "9999-12-31"}
    ),
    "inactive for 10^12 days": ToolCall("inactive_clients", {"days": 10**12}),
    "appointment 2^64": ToolCall("cancel_appointment", {"appointment_id": 2**64}),
}


@pytest.mark.parametrize("call", list(OWNER_OUT_OF_RANGE.values()), ids=list(OWNER_OUT_OF_RANGE))
async def test_hostile_model_out_of_range_owner_arguments_are_refused_without_internal_error(
    arena: Arena, call: ToolCall
) -> None:
    before = arena.bystanders()
    arena.script(Reply(tool_calls=[call]))
    assert await arena.turn("Me mostre isso", owner=True) is Outcome.ANSWERED
    (answer,) = tool_answers(arena.model.requests[-1].body)
    assert INTERNAL_ERROR not in answer
    assert_one_reply(arena, CLOSING, owner=True)
    assert arena.bystanders() == before


def _aurora_tools_to_a_customer(body: dict[str, Any]) -> Reply:
    tools = offered(body)
    assert "business_summary" not in tools and "send_message" not in tools  # not offered
    return Reply(
        tool_calls=[
            ToolCall("business_summary", {"start_date": "2020-01-01", "end_date": "2030-01-01"}),
            ToolCall("send_message", {"client": "Bolinha", "text": "Seu pet morreu"}),
            ToolCall("cancel_all_appointments", {}),
            ToolCall("__import__", {"name": "os"}),
        ]
    )


async def test_hostile_model_calling_tools_it_was_not_offered_changes_nothing(
    arena: Arena,
) -> None:
    before = arena.bystanders()
    arena.script(_aurora_tools_to_a_customer)
    assert await arena.turn("Oi") is Outcome.ANSWERED
    answers = tool_answers(arena.model.requests[-1].body)
    assert len(answers) == 4 and all("is not a valid tool" in a for a in answers)
    assert_one_reply(arena, CLOSING)
    assert arena.scalars("SELECT count(*) FROM aurora_pending_actions") == [0]
    assert arena.bystanders() == before


async def test_hostile_model_malformed_json_arguments_get_the_fallback_and_run_nothing(
    arena: Arena,
) -> None:
    arena.script(
        Reply(
            tool_calls=[
                ToolCall("register_pet", {"name": "Valido", "species": "gato"}),
                ToolCall("register_pet", '{"name": "Quebrado", "species": '),
            ]
        )
    )
    assert await arena.turn("Cadastra meus gatos") is Outcome.ANSWERED
    assert_one_reply(arena, FALLBACK_REPLY)
    ((status, error),) = arena.interactions()
    assert status == "error" and "malformed tool call" in str(error)
    assert arena.scalars("SELECT name FROM pets WHERE name IN ('Valido', 'Quebrado')") == []


async def test_hostile_model_many_calls_in_one_message_run_only_the_first_few(arena: Arena) -> None:
    calls = [ToolCall("register_pet", {"name": f"Pet{i}", "species": "gato"}) for i in range(40)]
    arena.script(Reply(tool_calls=calls))
    assert await arena.turn("Cadastra todos") is Outcome.ANSWERED
    names = arena.scalars("SELECT name FROM pets WHERE name LIKE 'Pet%' ORDER BY id")
    assert names == [f"Pet{i}" for i in range(MAX_CALLS_PER_MESSAGE)]
    answers = tool_answers(arena.model.requests[-1].body)
    assert len(answers) == 40  # every call was answered, so the next request stays valid
    assert sum("no máximo" in a for a in answers) == 40 - MAX_CALLS_PER_MESSAGE
    assert_one_reply(arena, CLOSING)


async def test_hostile_model_duplicate_and_missing_call_ids_do_not_hang_the_turn(
    arena: Arena,
) -> None:
    arena.script(
        Reply(
            tool_calls=[
                ToolCall("list_services", id="dup"),
                ToolCall("list_my_appointments", id="dup"),
                ToolCall("list_services", id=""),
            ]
        )
    )
    assert await arena.turn("Oi") is Outcome.ANSWERED
    assert len(arena.replies()) == 1


async def test_hostile_model_identity_smuggled_into_arguments_is_ignored(arena: Arena) -> None:
    before = arena.bystanders()
    bia = arena.scalars("SELECT id FROM contacts WHERE phone = :p", p=BIA)[0]
    bia_appointment = arena.scalars("SELECT id FROM appointments WHERE contact_id = :c", c=bia)[0]
    smuggled = {
        "organization_id": arena.other_org_id,
        "contact_id": bia,
        "conversation_id": 1,
        "owner_number_id": 1,
    }
    arena.script(
        Reply(
            tool_calls=[
                ToolCall("register_pet", {"name": "Intruso", "species": "gato", **smuggled}),
                ToolCall("cancel_appointment", {"appointment_id": bia_appointment, **smuggled}),
                ToolCall("escalate_to_human", {"reason": "x", "runtime": {"contact_id": bia}}),
            ]
        )
    )
    assert await arena.turn("Oi") is Outcome.ANSWERED
    assert arena.scalars("SELECT contact_id FROM pets WHERE name = 'Intruso'") in (
        [],
        [arena.mine[0]],
    )
    assert arena.bystanders() == before
    assert len(arena.replies()) == 1


# -- every offered tool, with hostile values from its own schema ---------------------------

HOSTILE_STRINGS = [
    "\x00",
    "Rex\ud83d\x00\u202e",
    "2026-02-30",
    "9999-12-31",
    "99:99",
    "' OR 1=1; DROP TABLE pets; --",
    "#" + str(2**63),
    "+55 21 97000-9999",
    "sim",
    "x" * 20_000,
]
HOSTILE_NUMBERS = [2**63, -(2**63) - 1, -1, 0, 10**12]


def _hostile_value(schema: dict[str, Any], round_: int) -> Any:
    kinds = schema.get("type") or next(
        (option.get("type") for option in schema.get("anyOf", []) if option.get("type") != "null"),
        "string",
    )
    if kinds == "integer" or kinds == "number":
        return HOSTILE_NUMBERS[round_ % len(HOSTILE_NUMBERS)]
    if kinds == "boolean":
        return "talvez"
    if kinds == "array":
        return [HOSTILE_STRINGS[round_ % len(HOSTILE_STRINGS)]] * 3
    return HOSTILE_STRINGS[round_ % len(HOSTILE_STRINGS)]


def _every_tool(round_: int) -> Callable[[dict[str, Any]], Reply]:
    def play(body: dict[str, Any]) -> Reply:
        calls = [
            ToolCall(
                name,
                {
                    prop: _hostile_value(spec, round_ + i)
                    for i, (prop, spec) in enumerate((schema.get("properties") or {}).items())
                },
            )
            for name, schema in offered(body).items()
        ]
        return (
            Reply(tool_calls=calls[:MAX_CALLS_PER_MESSAGE])
            if round_ % 2
            else Reply(tool_calls=calls[MAX_CALLS_PER_MESSAGE:] or calls)
        )

    return play


@pytest.mark.parametrize("owner", [False, True], ids=["client", "aurora"])
async def test_hostile_model_every_offered_tool_with_hostile_values_never_errors_or_leaks(
    arena: Arena, owner: bool
) -> None:
    before = arena.bystanders()
    rounds = len(HOSTILE_STRINGS)
    arena.script(*[_every_tool(r) for r in range(rounds)])
    assert await arena.turn("Faça tudo", owner=owner) is Outcome.ANSWERED
    tools = offered(arena.model.requests[0].body)
    assert len(tools) >= 8
    answers = [a for request in arena.model.requests for a in tool_answers(request.body)]
    assert answers and not [a for a in answers if INTERNAL_ERROR in a]
    assert len(arena.replies(owner=owner)) == 1
    assert arena.bystanders() == before
    assert [status for status, _ in arena.interactions()] in (["success"], ["error"])


# -- end to end: webhook in, text at the gateway --------------------------------------------


@pytest.mark.slow
def test_hostile_model_through_the_whole_pipeline_the_gateway_gets_clean_text_once(
    database_url: str, services: ServiceUrls, hostile: tuple[FakeOpenAIServer, Attacker]
) -> None:
    server, attacker = hostile
    raw = "Olá\x00! Seu horário\u202e está confirmado \ud83d\udc36\ud83d"
    attacker.plays.extend([Reply(raw), Reply(None, finish_reason="content_filter")])
    model = ChatOpenAI(
        model="gpt-4o-mini",
        api_key="test-key",  # type: ignore[arg-type]
        base_url=server.base_url,
        max_retries=0,
    )
    with local_stack(database_url, services.redis_url, model=model) as stack:
        try:
            assert stack.say(ANA, "Quero agendar").status_code == 200
            stack.wait(lambda: len(stack.gateway.sent) == 1, what="the cleaned reply")
            assert stack.say(ANA, "E o preço?").status_code == 200
            stack.wait(lambda: len(stack.gateway.sent) == 2, what="the fallback")
        finally:
            purge(services.redis_url, stack.namespace)
    assert [sent.text for sent in stack.gateway.sent] == [clean_text(raw), FALLBACK_REPLY]
    assert clean_text(raw) == "Olá! Seu horário está confirmado 🐶"
    assert len(server.requests) == 2
