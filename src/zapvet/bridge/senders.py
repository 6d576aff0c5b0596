"""Sending a text through Evolution API or the WhatsApp Cloud API, one `Sender` per instance.

    SendError(TransientError)     timeouts, lost connections, 5xx, 429, Meta throttling codes
    RejectedSend(PermanentError)  the provider refused for good: bad key, unknown instance or
                                  number, invalid body (other 4xx), or a reply with no id;
                                  `code` is Meta's (131047 outside the 24-hour window,
                                  132000–132016 a template error)

The same senders also show "digitando…" and mark the customer's messages read (`Receipts`,
from `build_receipts`): courtesies the caller treats as best effort.

Both errors live in `zapvet.errors` and carry the HTTP `status` (None when no response came) and
the provider's own `detail`.
Neither the credentials nor the message text ever appear in them: the detail is scrubbed of
both, because a provider may echo what it was sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Protocol

import httpx

from zapvet.errors import ConfigError
from zapvet.errors import RejectedSend as RejectedSend
from zapvet.errors import SendError as SendError
from zapvet.models.whatsapp import WhatsAppInstance

#: Seconds for the whole request; a hung gateway must fail the attempt, not the worker.
DEFAULT_TIMEOUT_S = 15.0
#: Characters of a provider's error kept in `detail`; error pages can be long HTML.
_DETAIL_LIMIT = 500
_REDACTED = "[redacted]"
_BSUID = re.compile(r"[A-Z]{2}\.\w+")
# Meta answers throttling and outages with these codes, often under HTTP 400.
_CLOUD_TRANSIENT_CODES = frozenset({2, 4, 80007, 130429, 131000, 131016, 131056, 133004})
#: Meta's "Re-engagement message": free text more than 24 hours after the contact last wrote.
OUTSIDE_WINDOW = 131047
#: Meta's template errors: missing, paused, not approved, wrong parameters or language.
TEMPLATE_ERRORS = range(132000, 132017)


class Sender(Protocol):
    """Delivers one text to one chat of one WhatsApp number."""

    async def send_text(self, chat_id: str, text: str) -> str:
        """Send `text` to `chat_id` (exactly as received) and return the provider's message id.

        Raises:
            SendError: a transient failure; retrying may help.
            RejectedSend: a permanent failure; retrying cannot help.
        """
        ...


class Receipts(Protocol):
    """The typing indicator and read receipts of one WhatsApp number."""

    async def send_presence(self, chat_id: str, last_id: str, *, delay_ms: int) -> None:
        """Show "digitando…" in `chat_id` for about `delay_ms`; `last_id` is the provider id
        of the customer's newest message (the Cloud API shows typing as a reply to it).

        Raises:
            SendError: a transient failure.
            RejectedSend: the provider refused.
        """
        ...

    async def mark_read(self, chat_id: str, provider_ids: Sequence[str]) -> None:
        """Mark the customer's messages `provider_ids` (oldest first) in `chat_id` read.

        Raises:
            SendError: a transient failure.
            RejectedSend: the provider refused.
        """
        ...


class EvolutionSender:
    """`POST {api_url}/message/sendText/{instance}` on an Evolution API v2 server."""

    def __init__(
        self,
        api_url: str,
        instance: str,
        api_key: str,
        client: httpx.AsyncClient,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._url = f"{api_url.rstrip('/')}/message/sendText/{instance}"
        self._chat_url = f"{api_url.rstrip('/')}/chat/{{action}}/{instance}"
        self._api_key = api_key
        self._client = client
        self._timeout = timeout

    async def send_text(self, chat_id: str, text: str) -> str:
        """Send `text` to `chat_id`; returns Evolution's `key.id`.

        Raises:
            SendError: a transient failure; retrying may help.
            RejectedSend: a permanent failure; retrying cannot help.
        """
        secrets = (self._api_key, text)
        response = await _post(
            self._client,
            self._url,
            headers={"apikey": self._api_key},
            body={"number": chat_id, "text": text},
            timeout=self._timeout,
            secrets=secrets,
        )
        payload = _json(response)
        if not response.is_success:
            detail = _evolution_detail(payload) or _text_detail(response)
            raise _failure(response.status_code, _scrub(detail, secrets))
        key = payload.get("key") if isinstance(payload, dict) else None
        return _message_id(key.get("id") if isinstance(key, dict) else None, response)

    async def send_presence(self, chat_id: str, last_id: str, *, delay_ms: int) -> None:
        """`POST /chat/sendPresence/{instance}`: Evolution shows "composing", holds the
        request for `delay_ms`, then sends "paused"."""
        del last_id  # Baileys' presence is per chat, not per message
        body = {"number": chat_id, "presence": "composing", "delay": delay_ms}
        await self._chat("sendPresence", body, timeout=self._timeout + delay_ms / 1000)

    async def mark_read(self, chat_id: str, provider_ids: Sequence[str]) -> None:
        """`POST /chat/markMessageAsRead/{instance}` for exactly these messages (never
        Evolution's `readMessages` setting, which reads everything)."""
        keys = [{"remoteJid": chat_id, "fromMe": False, "id": id_} for id_ in provider_ids]
        if keys:
            await self._chat("markMessageAsRead", {"readMessages": keys}, timeout=self._timeout)

    async def _chat(self, action: str, body: dict[str, Any], *, timeout: float) -> None:
        secrets = (self._api_key,)
        response = await _post(
            self._client,
            self._chat_url.format(action=action),
            headers={"apikey": self._api_key},
            body=body,
            timeout=timeout,
            secrets=secrets,
        )
        if not response.is_success:
            detail = _evolution_detail(_json(response)) or _text_detail(response)
            raise _failure(response.status_code, _scrub(detail, secrets))


class CloudSender:
    """`POST {graph_url}/{phone_number_id}/messages` on the WhatsApp Cloud API."""

    def __init__(
        self,
        graph_url: str,
        phone_number_id: str,
        access_token: str,
        client: httpx.AsyncClient,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._url = f"{graph_url.rstrip('/')}/{phone_number_id}/messages"
        self._access_token = access_token
        self._client = client
        self._timeout = timeout

    async def send_text(self, chat_id: str, text: str) -> str:
        """Send `text` to a `wa_id` or a business-scoped user id ("BR.1234…"); returns the wamid.

        Raises:
            SendError: a transient failure; retrying may help.
            RejectedSend: a permanent failure; retrying cannot help.
        """
        body = {"type": "text", "text": {"preview_url": False, "body": text}}
        return await self._send(chat_id, body, secrets=(self._access_token, text))

    async def send_template(
        self, chat_id: str, name: str, language: str, parameters: list[str]
    ) -> str:
        """Send the approved template `name` in `language`, its body's `{{1}}`, `{{2}}`… filled
        with `parameters` in order; allowed outside the 24-hour window. Returns the wamid.

        Raises:
            SendError: a transient failure; retrying may help.
            RejectedSend: a permanent failure (`code` 132000–132016: the template is wrong
                or not approved); retrying cannot help.
        """
        template: dict[str, Any] = {"name": name, "language": {"code": language}}
        if parameters:
            values = [{"type": "text", "text": value} for value in parameters]
            template["components"] = [{"type": "body", "parameters": values}]
        # Names and reasons are the customer's; bare figures ("3", "19:00") are left alone, or
        # scrubbing them would blank Meta's own codes and counts out of the detail.
        personal = (value for value in parameters if any(c.isalpha() for c in value))
        secrets = (self._access_token, *personal)
        return await self._send(chat_id, {"type": "template", "template": template}, secrets)

    async def _send(self, chat_id: str, message: dict[str, Any], secrets: tuple[str, ...]) -> str:
        # Users known only by a BSUID (those with a username) have no wa_id to put in "to".
        address = "recipient" if _BSUID.fullmatch(chat_id) else "to"
        body = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            address: chat_id,
            **message,
        }
        response = await self._post(body, secrets)
        payload = _json(response)
        if not response.is_success:
            error = payload.get("error") if isinstance(payload, dict) else None
            if not isinstance(error, dict):
                raise _failure(response.status_code, _scrub(_text_detail(response), secrets))
            detail = _scrub(_cloud_detail(error), secrets)
            code = _code(error)
            if code in _CLOUD_TRANSIENT_CODES:
                raise SendError(response.status_code, detail)
            raise _failure(response.status_code, detail, code=code)
        messages = payload.get("messages") if isinstance(payload, dict) else None
        first = messages[0] if isinstance(messages, list) and messages else None
        return _message_id(first.get("id") if isinstance(first, dict) else None, response)

    async def _post(self, body: dict[str, Any], secrets: tuple[str, ...]) -> httpx.Response:
        """POST `body` to the number's messages endpoint."""
        return await _post(
            self._client,
            self._url,
            headers={"Authorization": f"Bearer {self._access_token}"},
            body=body,
            timeout=self._timeout,
            secrets=secrets,
        )

    async def send_presence(self, chat_id: str, last_id: str, *, delay_ms: int) -> None:
        """The Cloud API's typing indicator: it marks `last_id` read as well, and lasts up
        to 25 s or until the reply (`delay_ms` is Meta's to decide)."""
        del chat_id, delay_ms
        await self._status(last_id, typing=True)

    async def mark_read(self, chat_id: str, provider_ids: Sequence[str]) -> None:
        """`status: read` on the newest message; Meta marks the earlier ones read with it."""
        del chat_id
        if provider_ids:
            await self._status(provider_ids[-1], typing=False)

    async def _status(self, message_id: str, *, typing: bool) -> None:
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": message_id,
        }
        if typing:
            body["typing_indicator"] = {"type": "text"}
        secrets = (self._access_token,)
        response = await self._post(body, secrets)
        if not response.is_success:
            payload = _json(response)
            error = payload.get("error") if isinstance(payload, dict) else None
            detail = _cloud_detail(error) if isinstance(error, dict) else _text_detail(response)
            raise _failure(response.status_code, _scrub(detail, secrets))


def build_sender(instance: WhatsAppInstance, client: httpx.AsyncClient) -> Sender:
    """The sender for `instance`'s provider; a cloud instance's `api_url` is the Graph base
    ("https://graph.facebook.com/v21.0").

    Raises:
        ConfigError: the instance lacks the credential its provider needs.
    """
    if instance.provider == "evolution":
        if not instance.api_key:
            raise ConfigError(_setting(instance, "api_key"), "required to send through Evolution")
        return EvolutionSender(instance.api_url, instance.instance, instance.api_key, client)
    if not instance.access_token:
        raise ConfigError(_setting(instance, "access_token"), "required to send through Cloud API")
    phone_number_id = instance.phone_number_id or instance.instance
    return CloudSender(instance.api_url, phone_number_id, instance.access_token, client)


def build_receipts(instance: WhatsAppInstance, client: httpx.AsyncClient) -> Receipts:
    """The typing indicator and read receipts of `instance` (its sender, seen as `Receipts`).

    Raises:
        ConfigError: the instance lacks the credential its provider needs.
    """
    sender = build_sender(instance, client)
    assert isinstance(sender, EvolutionSender | CloudSender)
    return sender


async def _post(
    client: httpx.AsyncClient,
    url: str,
    *,
    headers: dict[str, str],
    body: dict[str, Any],
    timeout: float,
    secrets: tuple[str, ...],
) -> httpx.Response:
    """POST `body` as JSON; transport failures become SendError (RejectedSend for a bad URL)."""
    try:
        return await client.post(url, headers=headers, json=body, timeout=timeout)
    except httpx.TimeoutException as exc:
        raise SendError(None, f"no answer within {timeout:g} s ({type(exc).__name__})") from exc
    except httpx.UnsupportedProtocol as exc:
        raise RejectedSend(None, _scrub(f"bad gateway URL: {exc}", secrets)) from exc
    except httpx.TransportError as exc:
        raise SendError(None, _scrub(f"{type(exc).__name__}: {exc}", secrets)) from exc


def _failure(status: int, detail: str, *, code: int | None = None) -> SendError | RejectedSend:
    if status in (408, 429) or status >= 500:
        return SendError(status, detail)
    return RejectedSend(status, detail, code=code)


def _message_id(value: object, response: httpx.Response) -> str:
    if isinstance(value, str) and value:
        return value
    # The provider accepted the message: retrying could deliver it twice.
    raise RejectedSend(response.status_code, "accepted, but the response has no message id")


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _evolution_detail(payload: Any) -> str:
    """Evolution's `{"status", "error", "response": {"message": str | list}}`, as one line."""
    if not isinstance(payload, dict):
        return ""
    inner = payload.get("response")
    message = inner.get("message") if isinstance(inner, dict) else payload.get("message")
    if isinstance(message, list):
        items = [m if isinstance(m, str) else json.dumps(m, ensure_ascii=False) for m in message]
        message = "; ".join(items)
    if isinstance(message, str) and message:
        return message
    error = payload.get("error")
    return error if isinstance(error, str) else ""


def _cloud_detail(error: dict[str, Any]) -> str:
    """Meta's `{"message", "code", "error_data": {"details"}}`, as one line."""
    parts = [str(error.get("message") or "unknown error")]
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    if isinstance(details, str) and details:
        parts.append(details)
    code = _code(error)
    if code is not None:
        parts.append(f"code {code}")
    return " | ".join(parts)


def _code(error: dict[str, Any]) -> int | None:
    # Meta sends an int; some relays (YCloud, 360dialog) pass it on as a string.
    try:
        return int(error["code"])
    except (KeyError, TypeError, ValueError):
        return None


def _text_detail(response: httpx.Response) -> str:
    return response.text.strip() or response.reason_phrase


def _scrub(detail: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret.strip():
            detail = detail.replace(secret, _REDACTED)
    if len(detail) > _DETAIL_LIMIT:
        detail = detail[:_DETAIL_LIMIT] + "…"
    return detail


def _setting(instance: WhatsAppInstance, field: str) -> str:
    return f"whatsapp instance {instance.instance!r} {field}"
