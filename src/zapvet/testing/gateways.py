"""Fake Evolution API and WhatsApp Cloud API servers on loopback, speaking each wire format.

Each fake answers the provider's send-text and media-download endpoints as the real one does
(status codes, bodies, error shapes), records every request, keeps the texts it "sent", and
plays scripted failures. Each also builds inbound webhook payloads in its provider's format
(texts, and voice notes, images, documents and the other kinds through `incoming_media`), so
tests and the demo can post realistic messages to zapvet's webhooks.
"""

from __future__ import annotations

import base64
import hashlib
import http
import json
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from zapvet.bridge.cloud import signature
from zapvet.testing.inbound_media import (
    FILE_KINDS,
    Extras,
    MediaKind,
    cloud_message,
    evolution_message,
)
from zapvet.testing.loopback import LoopbackFake

#: The Cloud API's limit on `text.body`.
CLOUD_TEXT_LIMIT = 4096


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the fake received it; `body` is the parsed JSON (None if it was not JSON)
    and header names are lower case."""

    method: str
    path: str
    body: Any
    headers: dict[str, str]


class SentText(NamedTuple):
    """A text the fake accepted, with the message id it answered."""

    chat_id: str
    text: str
    provider_id: str


class SentTemplate(NamedTuple):
    """A template message the fake Cloud API accepted: its body parameters, in order."""

    chat_id: str
    name: str
    language: str
    parameters: list[str]
    provider_id: str


@dataclass(frozen=True)
class _Fault:
    """A scripted answer: wait `delay` seconds, then fail with `status` (None: answer normally)."""

    status: int | None
    delay: float = 0.0
    message: str | None = None
    code: int | None = None


OnSend = Callable[[SentText], None]


@dataclass(frozen=True)
class _Media:
    data: bytes
    mimetype: str
    file_name: str | None = None
    #: What the Cloud API's media-URL answer claims (None: the truth).
    file_size: int | None = None
    sha256: str | None = None


#: The content types Evolution's getBase64FromMediaMessage downloads (TypeMediaMessage).
_EVOLUTION_MEDIA = (
    "imageMessage",
    "documentMessage",
    "audioMessage",
    "videoMessage",
    "stickerMessage",
    "ptvMessage",
)


class _GatewayServer(LoopbackFake):
    """A loopback fake that records requests and plays scripted faults.

    A request cut short by `stop()` is answered 503 and nothing is sent.
    """

    _name = "fake gateway"

    def __init__(self, *, latency: float, port: int, on_send: OnSend | None) -> None:
        super().__init__(port=port)
        self._latency = latency
        self._on_send = on_send
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._sent: list[SentText] = []
        self._faults: deque[_Fault] = deque()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def sent(self) -> list[SentText]:
        with self._lock:
            return list(self._sent)

    def fail_next(
        self,
        status: int = 500,
        *,
        times: int = 1,
        message: str | None = None,
        code: int | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer the next `times` requests (sends and media downloads alike) with `status`
        (after `delay` seconds), sending nothing.

        `message` replaces the provider's usual text for that status; `code` is the Cloud
        API error code (ignored by Evolution).
        """
        with self._lock:
            self._faults.extend(_Fault(status, delay, message, code) for _ in range(times))

    def stall_next(self, seconds: float, *, times: int = 1) -> None:
        """Hold the next `times` sends for `seconds` before handling them as usual."""
        with self._lock:
            self._faults.extend(_Fault(None, seconds) for _ in range(times))

    def _app(self) -> Starlette:
        return Starlette(routes=self._routes())

    def _routes(self) -> list[Route]:
        raise NotImplementedError

    async def _receive(
        self, request: Request, *, faults: Callable[[Any], bool] | None = None
    ) -> tuple[Any, _Fault | None]:
        """Record `request`, and take the next scripted fault, if any (only when `faults`,
        given, says the body takes one: read receipts and typing never do)."""
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        recorded = RecordedRequest(request.method, request.url.path, body, dict(request.headers))
        takes = faults is None or faults(body)
        with self._lock:
            self._requests.append(recorded)
            fault = self._faults.popleft() if self._faults and takes else None
        return body, fault

    def _deliver(self, chat_id: str, text: str, provider_id: str) -> None:
        sent = SentText(chat_id, text, provider_id)
        with self._lock:
            self._sent.append(sent)
        if self._on_send is not None:
            self._on_send(sent)


class FakeEvolutionAPI(_GatewayServer):
    """Evolution API v2's `POST /message/sendText/{instance}`,
    `POST /chat/getBase64FromMediaMessage/{instance}` (files registered with `add_media`),
    `/chat/sendPresence` and `/chat/markMessageAsRead` (recorded: `presences`, `read_marks`),
    with their guards in Evolution's order: unknown instance 404, then a missing or wrong
    `apikey` 401, then body validation 400.

    `on_send` runs on the server's thread for every accepted text and must not block.
    """

    _name = "fake Evolution API"

    def __init__(
        self,
        *,
        api_key: str = "evolution-test-key",
        instances: Iterable[str] = ("petshop-centro",),
        number: str = "5511933334444",
        not_on_whatsapp: Iterable[str] = (),
        webhook_url: str = "https://bot.example.com/webhooks/evolution",
        latency: float = 0.0,
        port: int = 0,
        on_send: OnSend | None = None,
    ) -> None:
        super().__init__(latency=latency, port=port, on_send=on_send)
        self.api_key = api_key
        self.instances = set(instances)
        #: The instance's own phone: webhooks carry it as `sender`.
        self.number = number
        self.not_on_whatsapp = set(not_on_whatsapp)
        self.webhook_url = webhook_url
        self._media: dict[str, _Media] = {}
        #: Answer every sendPresence and markMessageAsRead with this HTTP status (None: 201).
        self.courtesy_status: int | None = None

    @property
    def base_url(self) -> str:
        """The server URL to configure as an Evolution instance's `api_url`.

        Raises:
            RuntimeError: the port is still to be picked by `start()`.
        """
        return self._origin()

    def incoming(
        self,
        instance: str,
        phone: str,
        text: str,
        *,
        message_id: str | None = None,
        push_name: str | None = None,
        from_me: bool = False,
        timestamp: int | datetime | None = None,
        lid: str | None = None,
    ) -> dict[str, Any]:
        """A `messages.upsert` webhook for a plain text in a 1:1 chat, as Evolution 2.3.x posts it.

        `phone` is international digits; with `lid` ("203948571726354") the chat is addressed
        by LID with the phone in `remoteJidAlt`, as Evolution 2.3.5–2.3.6 sends it.
        `push_name` defaults to "Ana Souza", or "Você" (as Evolution names us) for `from_me`.
        """
        message = {"conversation": text, "messageContextInfo": {"deviceListMetadataVersion": 2}}
        key = _evolution_key(phone, message_id, from_me, lid)
        return self._upsert(
            instance, key, message, "conversation", push_name=push_name, timestamp=timestamp
        )

    def add_media(
        self, message_id: str, data: bytes, mimetype: str, file_name: str | None = None
    ) -> None:
        """Serve `data` from `getBase64FromMediaMessage` for the message `message_id`."""
        with self._lock:
            self._media[message_id] = _Media(data, mimetype, file_name)

    def incoming_media(
        self,
        number: str,
        kind: MediaKind,
        data: bytes | None,
        *,
        mimetype: str | None = None,
        caption: str | None = None,
        seconds: int | None = None,
        ptt: bool = False,
        file_name: str | None = None,
        inline_base64: bool = False,
        speech_to_text: str | None = None,
        instance: str | None = None,
        message_id: str | None = None,
        push_name: str | None = None,
        timestamp: int | datetime | None = None,
        latitude: float = -23.5614,
        longitude: float = -46.6559,
        place_name: str | None = None,
        address: str | None = None,
        display_name: str = "Dra. Paula Vet",
        vcard: str | None = None,
        contacts: Iterable[tuple[str, str]] = (),
        emoji: str = "👍",
        target_id: str = "",
    ) -> dict[str, Any]:
        """A `messages.upsert` webhook carrying a voice note, image, video, document, sticker,
        location, contact card(s) or reaction from `number`, as Evolution 2.3.x posts it.

        A file's `data` is registered with `add_media` under the message id, so
        `getBase64FromMediaMessage` serves it; `inline_base64` also puts it in
        `message.base64` (Evolution's webhook `base64` setting), and `speech_to_text` in
        `message.speechToText` (its OpenAI integration). `instance` defaults to the fake's
        only (or first) instance; `target_id` is the message a reaction is to.
        """
        key = _evolution_key(number, message_id, False, None)
        extras = Extras(
            latitude=latitude,
            longitude=longitude,
            place_name=place_name,
            address=address,
            display_name=display_name,
            vcard=vcard,
            contacts=tuple(contacts),
            emoji=emoji,
            target_id=target_id,
        )
        message_type, message = evolution_message(
            kind,
            data,
            mimetype=mimetype,
            caption=caption,
            seconds=seconds,
            ptt=ptt,
            file_name=file_name,
            remote_jid=key["remoteJid"],
            extras=extras,
        )
        if kind in FILE_KINDS and data is not None:
            content = message[message_type]
            self.add_media(key["id"], data, content["mimetype"], content.get("fileName"))
            if inline_base64:
                message["base64"] = base64.b64encode(data).decode()
        if speech_to_text is not None:
            message["speechToText"] = speech_to_text
        name = instance if instance is not None else sorted(self.instances)[0]
        return self._upsert(
            name, key, message, message_type, push_name=push_name, timestamp=timestamp
        )

    def connection_update(
        self, instance: str, state: str, *, reason: int | None = None
    ) -> dict[str, Any]:
        """A `connection.update` webhook as Evolution 2.3.x posts it (`connectionUpdate` in
        whatsapp.baileys.service.ts): `state` "open", "connecting", "close" or "refused",
        `statusReason` Baileys' DisconnectReason (200 when there was no error; "close" is
        only posted when Evolution gives up reconnecting: 401 logged out, 403 forbidden)."""
        data: dict[str, Any] = {"instance": instance, "state": state}
        data["statusReason"] = reason if reason is not None else (401 if state == "close" else 200)
        if state == "open":
            data.update(
                wuid=f"{self.number}@s.whatsapp.net",
                profileName="Pet Feliz",
                profilePictureUrl=None,
            )
        return self._envelope("connection.update", instance, data)

    def qrcode_updated(self, instance: str) -> dict[str, Any]:
        """A `qrcode.updated` webhook: a new QR code is waiting to be scanned."""
        code = secrets.token_urlsafe(48)
        qrcode = {"instance": instance, "pairingCode": None, "code": code, "base64": ""}
        qrcode["base64"] = "data:image/png;base64," + base64.b64encode(code.encode()).decode()
        return self._envelope("qrcode.updated", instance, {"qrcode": qrcode})

    def _envelope(self, event: str, instance: str, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "event": event,
            "instance": instance,
            "data": data,
            "destination": self.webhook_url,
            "date_time": datetime.now().isoformat(timespec="milliseconds") + "Z",
            "sender": f"{self.number}@s.whatsapp.net",
            "server_url": self._origin() if self._port else "http://127.0.0.1",
            "apikey": None,
        }

    def _upsert(
        self,
        instance: str,
        key: dict[str, Any],
        message: dict[str, Any],
        message_type: str,
        *,
        push_name: str | None,
        timestamp: int | datetime | None,
    ) -> dict[str, Any]:
        seconds = _epoch(timestamp)
        from_me = bool(key["fromMe"])
        data = {
            "key": key,
            "pushName": push_name or ("Você" if from_me else "Ana Souza"),
            "status": "SERVER_ACK" if from_me else "DELIVERY_ACK",
            "message": message,
            "messageType": message_type,
            "messageTimestamp": seconds,
            "instanceId": _instance_id(instance),
            "source": "web" if from_me else "android",
        }
        return {
            "event": "messages.upsert",
            "instance": instance,
            "data": data,
            "destination": self.webhook_url,
            # Evolution stamps local time and appends a Z regardless.
            "date_time": datetime.fromtimestamp(seconds).isoformat(timespec="milliseconds") + "Z",
            "sender": f"{self.number}@s.whatsapp.net",
            "server_url": self._origin() if self._port else "http://127.0.0.1",
            # Null unless AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES is on, which is not the default.
            "apikey": None,
        }

    def _routes(self) -> list[Route]:
        return [
            Route("/message/sendText/{instance}", self._send_text, methods=["POST"]),
            Route("/chat/getBase64FromMediaMessage/{instance}", self._get_base64, methods=["POST"]),
            Route("/chat/sendPresence/{instance}", self._send_presence, methods=["POST"]),
            Route("/chat/markMessageAsRead/{instance}", self._mark_read, methods=["POST"]),
        ]

    @property
    def presences(self) -> list[dict[str, Any]]:
        """The bodies of the `sendPresence` calls the fake accepted, in order."""
        return [r.body for r in self.requests if "/chat/sendPresence/" in r.path and r.body]

    @property
    def read_marks(self) -> list[dict[str, Any]]:
        """The `readMessages` keys of the `markMessageAsRead` calls, in order."""
        return [
            key
            for r in self.requests
            if "/chat/markMessageAsRead/" in r.path and isinstance(r.body, dict)
            for key in r.body.get("readMessages") or []
        ]

    async def _chat_call(self, request: Request) -> tuple[Any, Response | None]:
        """Record, check the instance and key; the body, or the refusal. Scripted faults
        are for sends and downloads: these answer `courtesy_status` instead, when set."""
        body, _ = await self._receive(request, faults=lambda _: False)
        if not await self._pause(self._latency):
            return body, _evolution_error(503, "the fake Evolution API is stopping")
        if self.courtesy_status is not None:
            return body, _evolution_error(self.courtesy_status, None)
        instance = request.path_params["instance"]
        if instance not in self.instances:
            return body, _evolution_error(404, [f'The "{instance}" instance does not exist'])
        if request.headers.get("apikey") != self.api_key:
            return body, _evolution_error(401, "Unauthorized")
        if not isinstance(body, dict):
            return body, _evolution_error(400, ["instance is not of a type(s) object"])
        return body, None

    async def _send_presence(self, request: Request) -> Response:
        """`presenceSchema`: `number`, `presence` and `delay` required. The real server holds
        the request for `delay` ms; the fake answers at once."""
        body, refused = await self._chat_call(request)
        if refused is not None:
            return refused
        missing = [
            f'instance requires property "{k}"'
            for k in ("number", "presence", "delay")
            if k not in body
        ]
        if missing:
            return _evolution_error(400, missing)
        if body["presence"] not in ("unavailable", "available", "composing", "recording", "paused"):
            return _evolution_error(400, ["presence is not one of enum values"])
        if not isinstance(body["delay"], int | float) or isinstance(body["delay"], bool):
            return _evolution_error(400, ["delay is not of a type(s) number"])
        return JSONResponse({"presence": body["presence"]}, status_code=201)

    async def _mark_read(self, request: Request) -> Response:
        """`readMessageSchema`: a non-empty `readMessages` of `{id, fromMe, remoteJid}`."""
        body, refused = await self._chat_call(request)
        if refused is not None:
            return refused
        keys = body.get("readMessages")
        if not isinstance(keys, list) or not keys:
            return _evolution_error(400, ['instance requires property "readMessages"'])
        for key in keys:
            fields_ok = isinstance(key, dict) and all(
                isinstance(key.get(k), str) and key[k] for k in ("id", "remoteJid")
            )
            if not fields_ok or not isinstance(key.get("fromMe"), bool):
                return _evolution_error(400, ["readMessages[] requires id, fromMe and remoteJid"])
        return JSONResponse({"message": "Read messages", "read": "success"}, status_code=201)

    async def _get_base64(self, request: Request) -> Response:
        """Evolution's media download: the file of a webhook's `{key, message}`, in base64.

        Without its database Evolution cannot look a bare key up, so a body without
        `message.message` is 400 "Message not found", as is an id with no media registered.
        """
        body, fault = await self._receive(request)
        if not await self._pause(self._latency + (fault.delay if fault else 0.0)):
            return _evolution_error(503, "the fake Evolution API is stopping")
        if fault is not None and fault.status is not None:
            return _evolution_error(fault.status, fault.message)
        instance = request.path_params["instance"]
        if instance not in self.instances:
            return _evolution_error(404, [f'The "{instance}" instance does not exist'])
        if request.headers.get("apikey") != self.api_key:
            return _evolution_error(401, "Unauthorized")
        found = body.get("message") if isinstance(body, dict) else None
        key = found.get("key") if isinstance(found, dict) else None
        message = found.get("message") if isinstance(found, dict) else None
        if not isinstance(key, dict) or not isinstance(message, dict):
            return _evolution_error(400, ["Message not found"])
        content_type = next((k for k in message if k in _EVOLUTION_MEDIA), None)
        if content_type is None:
            return _evolution_error(400, ["The message is not of the media type"])
        with self._lock:
            media = self._media.get(str(key.get("id")))
        if media is None:
            return _evolution_error(400, ["Error: Failed to fetch stream from the media server"])
        content = message[content_type]
        extension = media.mimetype.split("/")[-1].split(";")[0]
        answer = {
            "mediaType": content_type,
            "fileName": media.file_name or f"{key.get('id')}.{extension}",
            "caption": content.get("caption"),
            "size": {
                "fileLength": content.get("fileLength"),
                "height": content.get("height"),
                "width": content.get("width"),
            },
            "mimetype": media.mimetype,
            "base64": base64.b64encode(media.data).decode(),
            "buffer": None,
        }
        return JSONResponse(answer, status_code=201)

    async def _send_text(self, request: Request) -> Response:
        body, fault = await self._receive(request)
        if not await self._pause(self._latency + (fault.delay if fault else 0.0)):
            return _evolution_error(503, "the fake Evolution API is stopping")
        if fault is not None and fault.status is not None:
            return _evolution_error(fault.status, fault.message)
        instance = request.path_params["instance"]
        if instance not in self.instances:
            return _evolution_error(404, [f'The "{instance}" instance does not exist'])
        if request.headers.get("apikey") != self.api_key:
            return _evolution_error(401, "Unauthorized")
        if not isinstance(body, dict):
            return _evolution_error(400, ["instance is not of a type(s) object"])
        missing = [f'instance requires property "{k}"' for k in ("number", "text") if k not in body]
        if missing:
            return _evolution_error(400, missing)
        number, text = body["number"], body["text"]
        if not isinstance(number, str) or not isinstance(text, str) or not text:
            return _evolution_error(400, ["number and text must be non-empty strings"])
        jid = _evolution_jid(number)
        if jid.split("@")[0] in self.not_on_whatsapp:
            return _evolution_error(400, [{"jid": jid, "exists": False, "number": number}])
        message_id = _evolution_id()
        self._deliver(number, text, message_id)
        answer = {
            "key": {"remoteJid": jid, "fromMe": True, "id": message_id},
            "status": "PENDING",
            "message": {"conversation": text},
            "messageType": "conversation",
            "messageTimestamp": int(time.time()),
            "instanceId": _instance_id(instance),
            "source": "web",
        }
        return JSONResponse(answer, status_code=201)


class FakeCloudAPI(_GatewayServer):
    """The Graph API's `POST /{version}/{phone_number_id}/messages` for text and template
    messages, and media: `GET /{version}/{media_id}` answers a download URL on this server,
    which serves the bytes (files registered with `add_media`; 404 after `expire_media`).

    Checks the Bearer token (401, code 190), the phone number id (400, code 100) and the body
    (400, code 100, including the 4,096-character limit). A recipient whose window was
    closed (`close_window`) gets 131047 for free text, as Meta answers outside the 24-hour
    window; templates reach it. A template must be approved (`approve_template`: else
    132001) with its number of body parameters (else 132000). `on_send` runs on the
    server's thread for every accepted text and must not block.
    """

    _name = "fake Cloud API"

    def __init__(
        self,
        *,
        access_token: str = "cloud-test-token",
        phone_number_ids: Iterable[str] = ("106540352242922",),
        version: str = "v21.0",
        display_phone_number: str = "551133334444",
        waba_id: str = "102290129340398",
        latency: float = 0.0,
        port: int = 0,
        on_send: OnSend | None = None,
    ) -> None:
        super().__init__(latency=latency, port=port, on_send=on_send)
        self.access_token = access_token
        self.phone_number_ids = set(phone_number_ids)
        self.version = version
        self.display_phone_number = display_phone_number
        self.waba_id = waba_id
        self._media: dict[str, _Media] = {}
        self._downloads: dict[str, str] = {}  # URL token → media id
        self._expired: set[str] = set()
        self._closed: set[str] = set()  # recipients outside the 24-hour window
        self._templates: dict[tuple[str, str], int] = {}  # (name, language) → parameters
        self._sent_templates: list[SentTemplate] = []

    def close_window(self, recipient: str) -> None:
        """From now on free text to `recipient` (wa_id or BSUID) is refused with 131047."""
        with self._lock:
            self._closed.add(recipient)

    def open_window(self, recipient: str) -> None:
        """`recipient` wrote again: free text reaches them."""
        with self._lock:
            self._closed.discard(recipient)

    def approve_template(self, name: str, language: str = "pt_BR", *, parameters: int) -> None:
        """Template `name` in `language` is approved, with `parameters` body variables."""
        with self._lock:
            self._templates[(name, language)] = parameters

    @property
    def sent_templates(self) -> list[SentTemplate]:
        with self._lock:
            return list(self._sent_templates)

    @property
    def base_url(self) -> str:
        """The Graph base URL with version, to configure as a cloud instance's `api_url`.

        Raises:
            RuntimeError: the port is still to be picked by `start()`.
        """
        return f"{self._origin()}/{self.version}"

    def incoming(
        self,
        phone_number_id: str,
        wa_id: str,
        text: str,
        *,
        message_id: str | None = None,
        name: str = "Ana Souza",
        timestamp: int | datetime | None = None,
        user_id: str | None = None,
    ) -> dict[str, Any]:
        """A `messages` webhook carrying one text from `wa_id`, as Meta posts it.

        `user_id` is the contact's business-scoped id; by default one is made up from `wa_id`,
        the same every time.
        """
        message = {
            "from": wa_id,
            "id": message_id if message_id is not None else _wamid(wa_id),
            "timestamp": str(_epoch(timestamp)),
            "type": "text",
            "text": {"body": text},
        }
        return self._webhook(phone_number_id, wa_id, message, name=name, user_id=user_id)

    def add_media(
        self,
        media_id: str,
        data: bytes,
        mimetype: str,
        *,
        file_size: int | None = None,
        sha256: str | None = None,
    ) -> None:
        """Serve `data` as the media `media_id`: `GET /{version}/{media_id}` answers its URL.

        `file_size` and `sha256` (hex) replace what that answer claims, to play a provider
        that understates a size or a file that arrives corrupted.
        """
        with self._lock:
            self._media[media_id] = _Media(data, mimetype, None, file_size, sha256)
            self._expired.discard(media_id)

    def expire_media(self, media_id: str) -> None:
        """Make every URL of `media_id` answer 404, as Meta's do after five minutes."""
        with self._lock:
            self._expired.add(media_id)

    def incoming_media(
        self,
        wa_id: str,
        kind: MediaKind,
        data: bytes | None,
        *,
        mimetype: str | None = None,
        caption: str | None = None,
        ptt: bool = False,
        file_name: str | None = None,
        phone_number_id: str | None = None,
        media_id: str | None = None,
        message_id: str | None = None,
        name: str = "Ana Souza",
        timestamp: int | datetime | None = None,
        user_id: str | None = None,
        latitude: float = -23.5614,
        longitude: float = -46.6559,
        place_name: str | None = None,
        address: str | None = None,
        display_name: str = "Dra. Paula Vet",
        contacts: Iterable[tuple[str, str]] = (),
        emoji: str = "👍",
        target_id: str = "",
    ) -> dict[str, Any]:
        """A `messages` webhook carrying a voice note (`ptt`: `voice`), image, video, document,
        sticker, location, contact cards or reaction from `wa_id`, as Meta posts it.

        A file's `data` is registered with `add_media` under `media_id` (made up if not
        given); the webhook's `sha256` is base64, as Meta sends it. `phone_number_id`
        defaults to the fake's only (or first) one; `target_id` is the wamid reacted to.
        """
        if kind in FILE_KINDS and media_id is None:
            media_id = str(10**15 + secrets.randbelow(9 * 10**15))
        extras = Extras(
            latitude=latitude,
            longitude=longitude,
            place_name=place_name,
            address=address,
            display_name=display_name,
            contacts=tuple(contacts),
            emoji=emoji,
            target_id=target_id,
        )
        type_, content = cloud_message(
            kind,
            media_id,
            data,
            mimetype=mimetype,
            caption=caption,
            ptt=ptt,
            file_name=file_name,
            extras=extras,
        )
        if kind in FILE_KINDS and data is not None and media_id is not None:
            self.add_media(media_id, data, content["mime_type"])
        message = {
            "from": wa_id,
            "id": message_id if message_id is not None else _wamid(wa_id),
            "timestamp": str(_epoch(timestamp)),
            "type": type_,
            type_: content,
        }
        number = (
            phone_number_id if phone_number_id is not None else sorted(self.phone_number_ids)[0]
        )
        return self._webhook(number, wa_id, message, name=name, user_id=user_id)

    def _webhook(
        self,
        phone_number_id: str,
        wa_id: str,
        message: dict[str, Any],
        *,
        name: str,
        user_id: str | None,
    ) -> dict[str, Any]:
        contact = {
            "profile": {"name": name},
            "wa_id": wa_id,
            "user_id": user_id if user_id is not None else _bsuid(wa_id),
        }
        value = {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": self.display_phone_number,
                "phone_number_id": phone_number_id,
            },
            "contacts": [contact],
            "messages": [message],
        }
        change = {"field": "messages", "value": value}
        return {
            "object": "whatsapp_business_account",
            "entry": [{"id": self.waba_id, "changes": [change]}],
        }

    @staticmethod
    def encode(payload: dict[str, Any]) -> bytes:
        """`payload` serialised as Meta sends it: compact, non-ASCII escaped (`\\u00e3`)."""
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode()

    #: The `X-Hub-Signature-256` header value Meta sends with a body: the bridge's own rule.
    sign = staticmethod(signature)

    @property
    def read_marks(self) -> list[dict[str, Any]]:
        """The bodies of the `status: read` calls (typing indicators among them), in order."""
        return [
            r.body
            for r in self.requests
            if r.path.endswith("/messages") and isinstance(r.body, dict) and "status" in r.body
        ]

    def _routes(self) -> list[Route]:
        return [
            Route("/{version}/{phone_number_id}/messages", self._messages, methods=["POST"]),
            Route("/media-download/{token}", self._download, methods=["GET"]),  # first: it
            Route("/{version}/{media_id}", self._media_url, methods=["GET"]),  # would match here
        ]

    async def _media_url(self, request: Request) -> Response:
        """`GET /{version}/{media-id}`: where to download the media (a fresh URL each time)."""
        refused = await self._guard(request)
        if refused is not None:
            return refused
        media_id = request.path_params["media_id"]
        with self._lock:
            media = self._media.get(media_id)
            token = secrets.token_urlsafe(24)
            if media is not None:
                self._downloads[token] = media_id
        if media is None:
            return _cloud_error(
                400,
                f"Unsupported get request. Object with ID '{media_id}' does not exist, cannot be "
                "loaded due to missing permissions, or does not support this operation.",
                100,
            )
        answer = {
            "messaging_product": "whatsapp",
            "url": f"{self._origin()}/media-download/{token}",
            "mime_type": media.mimetype,
            "sha256": media.sha256 or hashlib.sha256(media.data).hexdigest(),
            "file_size": media.file_size if media.file_size is not None else len(media.data),
            "id": media_id,
        }
        return JSONResponse(answer)

    async def _download(self, request: Request) -> Response:
        """The media URL: the bytes, for the same Bearer token; 404 once expired."""
        refused = await self._guard(request)
        if refused is not None:
            return refused
        with self._lock:
            media_id = self._downloads.get(request.path_params["token"])
            expired = media_id is None or media_id in self._expired
            media = None if media_id is None else self._media.get(media_id)
        if expired or media is None:
            return _cloud_error(404, "(#100) The media URL has expired or does not exist", 100)
        # Chunked, without a Content-Length: a client must cap what it reads by itself.
        return StreamingResponse(_chunks(media.data), media_type=media.mimetype)

    async def _guard(self, request: Request) -> Response | None:
        """Record the request, play a scripted fault, check the Bearer token; None: go on."""
        _, fault = await self._receive(request)
        if not await self._pause(self._latency + (fault.delay if fault else 0.0)):
            return _cloud_error(503, "(#2) Service temporarily unavailable", 2)
        if fault is not None and fault.status is not None:
            code = fault.code if fault.code is not None else _default_code(fault.status)
            return _cloud_error(fault.status, fault.message or f"(#{code}) Scripted failure", code)
        if request.headers.get("authorization") != f"Bearer {self.access_token}":
            return _cloud_error(401, "Invalid OAuth access token - Cannot parse access token", 190)
        return None

    async def _messages(self, request: Request) -> Response:
        body, fault = await self._receive(request, faults=lambda body: not _is_read(body))
        if not await self._pause(self._latency + (fault.delay if fault else 0.0)):
            return _cloud_error(503, "(#2) Service temporarily unavailable", 2)
        if fault is not None and fault.status is not None:
            code = fault.code if fault.code is not None else _default_code(fault.status)
            return _cloud_error(fault.status, fault.message or f"(#{code}) Scripted failure", code)
        if request.headers.get("authorization") != f"Bearer {self.access_token}":
            return _cloud_error(401, "Invalid OAuth access token - Cannot parse access token", 190)
        phone_number_id = request.path_params["phone_number_id"]
        if phone_number_id not in self.phone_number_ids:
            return _cloud_error(
                400,
                f"Unsupported post request. Object with ID '{phone_number_id}' does not exist, "
                "cannot be loaded due to missing permissions, or does not support this operation.",
                100,
            )
        if _is_read(body):
            return _cloud_read(body)
        problem = _cloud_problem(body)
        if problem is not None:
            return _cloud_error(400, f"(#100) {problem}", 100, details=problem)
        address = "to" if isinstance(body.get("to"), str) else "recipient"
        recipient = str(body[address])
        message_id = _wamid(recipient)
        if body.get("type") == "template":
            refused = self._template(recipient, body["template"], message_id)
            if refused is not None:
                return refused
        else:
            with self._lock:
                closed = recipient in self._closed
            if closed:
                return _cloud_error(
                    400,
                    "(#131047) Re-engagement message",
                    131047,
                    details="Message failed to send because more than 24 hours have passed "
                    "since the customer last replied to this number.",
                )
            self._deliver(recipient, str(body["text"]["body"]), message_id)
        contact = {"input": recipient, "wa_id" if address == "to" else "user_id": recipient}
        answer = {
            "messaging_product": "whatsapp",
            "contacts": [contact],
            "messages": [{"id": message_id, "message_status": "accepted"}],
        }
        return JSONResponse(answer)

    def _template(
        self, recipient: str, template: dict[str, Any], message_id: str
    ) -> Response | None:
        """Send an already well-formed template message; Meta's 132xxx answer, or None."""
        name, language = template["name"], template["language"]["code"]
        components = template.get("components") or []
        body: dict[str, Any] = next((c for c in components if c.get("type") == "body"), {})
        values = [str(p["text"]) for p in body.get("parameters", [])]
        with self._lock:
            expected = self._templates.get((name, language))
        if expected is None:
            details = f"template name ({name}) does not exist in {language}"
            return _cloud_error(
                404, "(#132001) Template name does not exist in the translation", 132001,
                details=details,
            )  # fmt: skip
        if len(values) != expected:
            details = (
                f"body: number of localizable_params ({len(values)}) does not match the "
                f"expected number of params ({expected})"
            )
            return _cloud_error(
                400, "(#132000) Number of parameters does not match the expected number of params",
                132000, details=details,
            )  # fmt: skip
        with self._lock:
            self._sent_templates.append(SentTemplate(recipient, name, language, values, message_id))
        return None


async def _chunks(data: bytes, size: int = 16 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _is_read(body: Any) -> bool:
    return isinstance(body, dict) and "status" in body


def _cloud_read(body: dict[str, Any]) -> Response:
    """Mark as read (with the typing indicator when asked): `{"success": true}`."""
    problem = None
    if body.get("messaging_product") != "whatsapp":
        problem = "The parameter messaging_product is required."
    elif body.get("status") != "read":
        problem = "Param status must be one of {read}."
    elif not isinstance(body.get("message_id"), str) or not body["message_id"]:
        problem = "The parameter message_id is required."
    elif "typing_indicator" in body and body["typing_indicator"] != {"type": "text"}:
        problem = "Param typing_indicator[type] must be one of {text}."
    if problem is not None:
        return _cloud_error(400, f"(#100) {problem}", 100, details=problem)
    return JSONResponse({"success": True})


def _cloud_problem(body: Any) -> str | None:
    """What Meta would say is wrong with a text message body, or None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if body.get("messaging_product") != "whatsapp":
        return "The parameter messaging_product is required."
    if not isinstance(body.get("to") or body.get("recipient"), str):
        return "The parameter to is required."
    kind = body.get("type", "text")
    if kind == "template":
        return _template_problem(body.get("template"))
    if kind != "text":
        return "The fake Cloud API sends text and template messages only."
    text = body.get("text")
    content = text.get("body") if isinstance(text, dict) else None
    if not isinstance(content, str) or not content:
        return "The parameter text['body'] is required."
    if len(content) > CLOUD_TEXT_LIMIT:
        return f"Param text['body'] must be at most {CLOUD_TEXT_LIMIT} characters long."
    return None


def _template_problem(template: Any) -> str | None:
    """What Meta would say is wrong with a `template` object's shape, or None."""
    if not isinstance(template, dict) or not isinstance(template.get("name"), str):
        return "The parameter template['name'] is required."
    language = template.get("language")
    if not isinstance(language, dict) or not isinstance(language.get("code"), str):
        return "The parameter template['language']['code'] is required."
    components = template.get("components", [])
    if not isinstance(components, list):
        return "Param template['components'] must be an array."
    for component in components:
        parameters = component.get("parameters") if isinstance(component, dict) else None
        if not isinstance(parameters, list):
            return "Param template['components'][0]['parameters'] must be an array."
        for parameter in parameters:
            value = parameter.get("text") if isinstance(parameter, dict) else None
            if not isinstance(parameter, dict) or parameter.get("type") != "text":
                return "The fake Cloud API fills text parameters only."
            if not isinstance(value, str) or not value:
                return "Parameter of type text is missing text value."
            if "\n" in value or "\t" in value or "     " in value:
                return (
                    "Param text cannot have new-line/tab characters or more than 4 "
                    "consecutive spaces"
                )
    return None


def _evolution_error(status: int, message: str | list[Any] | None) -> Response:
    phrase = http.HTTPStatus(status).phrase
    error = {"status": status, "error": phrase, "response": {"message": message or [phrase]}}
    return JSONResponse(error, status_code=status)


def _cloud_error(status: int, message: str, code: int, *, details: str | None = None) -> Response:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    error["fbtrace_id"] = base64.urlsafe_b64encode(secrets.token_bytes(15)).decode()
    return JSONResponse({"error": error}, status_code=status)


def _default_code(status: int) -> int:
    return {401: 190, 403: 10, 429: 130429}.get(status, 2 if status >= 500 else 100)


def _evolution_jid(number: str) -> str:
    """The JID Evolution resolves a `number` field to (without its Brazilian ninth-digit lookup)."""
    if "@" in number:
        return number
    return f"{''.join(c for c in number if c.isdigit())}@s.whatsapp.net"


def _evolution_key(
    phone: str, message_id: str | None, from_me: bool, lid: str | None
) -> dict[str, Any]:
    """The `key` of a 1:1 message; with `lid` addressed as Evolution 2.3.5–2.3.6 does."""
    phone_jid = _evolution_jid(phone)
    key: dict[str, Any]
    if lid is None:
        key = {"remoteJid": phone_jid, "fromMe": from_me, "id": message_id}
    else:
        key = {
            "remoteJid": lid if lid.endswith("@lid") else f"{lid}@lid",
            "remoteJidAlt": phone_jid,
            "fromMe": from_me,
            "id": message_id,
            "participant": "",
            "addressingMode": "lid",
        }
    if message_id is None:
        key["id"] = _evolution_id() if from_me else uuid.uuid4().hex.upper()
    return key


def _evolution_id() -> str:
    """A message id as Baileys makes them for messages sent from the API ("3EB0" + 18 hex)."""
    return "3EB0" + secrets.token_hex(9).upper()


def _wamid(wa_id: str) -> str:
    """A fresh `wamid.` id in Meta's layout (the chat's number and a random key, base64)."""
    number = wa_id.encode()[:64]
    key = secrets.token_hex(9).upper().encode()
    raw = b"\x1c\x18" + bytes([len(number)]) + number + b"\x15\x02\x00\x11\x18\x12" + key + b"\x00"
    return "wamid." + base64.b64encode(raw).decode()


def _bsuid(wa_id: str) -> str:
    digest = hashlib.sha256(wa_id.encode()).digest()
    return f"BR.{int.from_bytes(digest[:8], 'big')}"


def _instance_id(instance: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"zapvet-fake-evolution:{instance}"))


def _epoch(timestamp: int | datetime | None) -> int:
    if timestamp is None:
        return int(time.time())
    if isinstance(timestamp, datetime):
        return int(timestamp.timestamp())
    return timestamp
