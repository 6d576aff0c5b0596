"""`zapvet chat`: the terminal plays a customer's (or the owner's) phone against `zapvet dev`.

Each line typed becomes an Evolution webhook to the bridge; replies are printed as soon as
the outbox records them as sent. At the end of input it waits for the answers still due,
so `echo "oi" | zapvet chat --org petfeliz` prints the reply too. `/audio PATH` (a voice
note), `/image PATH [caption]` and `/document PATH [caption]` send a local file: its bytes
travel inside the webhook (Evolution's "webhook base64"), since the gateway `zapvet dev`
runs knows nothing of the file, and the bridge hands them to the worker through Redis.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import text
from sqlmodel import Session, col, select

from zapvet import db
from zapvet.bridge.identity import normalise_phone, phone_key
from zapvet.cli.attachment import Attachment, is_command, read_attachment
from zapvet.errors import AttachmentError
from zapvet.errors import ChatError as ChatError
from zapvet.models import Organization, WhatsAppInstance
from zapvet.testing.gateways import FakeEvolutionAPI

Print = Callable[[str], None]
DEFAULT_PHONE = "5511912345678"
PUSH_NAME = "Você (chat)"
_REPLIES = text(
    """
    SELECT m.id, m.content FROM messages m
      JOIN conversations c ON c.id = m.conversation_id
      JOIN contact_identities i ON i.contact_id = c.contact_id AND i.kind = 'phone'
     WHERE m.organization_id = :org AND i.value = :key AND m.direction = 'outgoing'
       AND m.status IN ('sent', 'delivered', 'read') AND m.id > :after
       AND m.meta->>'part_of' IS NULL
     ORDER BY m.id
    """
)


_IN_FLIGHT = text(
    """
    SELECT count(*) FROM messages m
      JOIN conversations c ON c.id = m.conversation_id
      JOIN contact_identities i ON i.contact_id = c.contact_id AND i.kind = 'phone'
     WHERE m.organization_id = :org AND i.value = :key
       AND ((m.direction = 'incoming' AND m.status = 'pending')
            OR (m.direction = 'outgoing' AND m.status IN ('pending', 'sending')))
    """
)


@dataclass(frozen=True)
class Line:
    organization_id: int
    name: str
    instance: str
    token: str


def find_line(database_url: str, slug: str) -> Line:
    engine = db.build_engine(database_url, pool_size=1)
    try:
        with Session(engine) as session:
            org = session.exec(select(Organization).where(Organization.slug == slug)).first()
            if org is None or org.id is None:
                raise ChatError(f"no organization {slug!r}: apply its file first")
            instance = session.exec(
                select(WhatsAppInstance).where(
                    WhatsAppInstance.organization_id == org.id,
                    WhatsAppInstance.provider == "evolution",
                    col(WhatsAppInstance.is_active),
                )
            ).first()
            if instance is None or not instance.webhook_token:
                raise ChatError(f"{slug!r} has no Evolution instance to chat through")
            return Line(org.id, org.name, instance.instance, instance.webhook_token)
    finally:
        engine.dispose()


def _media_webhook(line: Line, number: str, attachment: Attachment) -> dict[str, Any]:
    # A builder per file: it keeps the bytes it was given, for a getBase64 nobody will ask.
    return FakeEvolutionAPI(instances=[line.instance]).incoming_media(
        number,
        attachment.kind,
        attachment.data,
        mimetype=attachment.mimetype,
        caption=attachment.caption,
        seconds=attachment.seconds,
        ptt=attachment.kind == "audio",
        file_name=attachment.path.name if attachment.kind == "document" else None,
        inline_base64=True,
        instance=line.instance,
        push_name=PUSH_NAME,
    )


def chat(
    database_url: str,
    bridge_url: str,
    line: Line,
    phone: str,
    lines: Iterable[str],
    say: Print,
    *,
    wait_s: float = 60.0,
) -> None:
    """Send each of `lines` as `phone`, printing replies as they are sent."""
    number = normalise_phone(phone)
    key = phone_key(number)
    engine = db.build_engine(database_url, pool_size=1)
    with engine.connect() as conn:
        seen = int(conn.execute(text("SELECT coalesce(max(id), 0) FROM messages")).scalar() or 0)
    state = {"seen": seen, "sent": 0, "answered": 0}
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.3):
            with engine.connect() as conn:
                rows = conn.execute(
                    _REPLIES, {"org": line.organization_id, "key": key, "after": state["seen"]}
                ).all()
            for message_id, content in rows:
                state["seen"], state["answered"] = message_id, state["answered"] + 1
                say(f"🐾 {line.name}: {content}")

    watcher = threading.Thread(target=watch, name="zapvet-chat-replies", daemon=True)
    watcher.start()
    builder = FakeEvolutionAPI(instances=[line.instance])
    url = f"{bridge_url.rstrip('/')}/webhooks/evolution/{line.instance}"
    try:
        for typed in lines:
            typed = typed.strip()
            if not typed:
                continue
            attachment = None
            if is_command(typed):
                try:
                    attachment = read_attachment(typed)
                except AttachmentError as exc:
                    say(f"not sent: {exc}")
                    continue
                payload = _media_webhook(line, number, attachment)
            else:
                payload = builder.incoming(line.instance, number, typed, push_name=PUSH_NAME)
            headers = {"X-Webhook-Token": line.token}
            # A file's base64 can be tens of megabytes: more than httpx's default 5 s allows.
            response = httpx.post(url, json=payload, headers=headers, timeout=60)
            if response.status_code != 200:
                say(f"bridge refused the message: {response.status_code} {response.text}")
                continue
            if attachment is not None:
                say(attachment.describe())
            state["sent"] += 1
        deadline = time.monotonic() + wait_s
        while state["sent"] and time.monotonic() < deadline:
            with engine.connect() as conn:
                params = {"org": line.organization_id, "key": key}
                busy = int(conn.execute(_IN_FLIGHT, params).scalar() or 0)
            if not busy and state["answered"]:
                break
            time.sleep(0.3)
        time.sleep(0.6)  # let the watcher print what was just sent
    finally:
        done.set()
        watcher.join()
        engine.dispose()
