"""WhatsApp JIDs (`user[_agent][:device]@server`): parts, kinds, phone numbers and LIDs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

JidKind = Literal[
    "phone",
    "lid",
    "group",
    "broadcast",
    "newsletter",
    "hosted",
    "hosted_lid",
    "bot",
    "call",
    "other",
]

STATUS_BROADCAST = "status@broadcast"

_KIND_BY_SERVER: dict[str, JidKind] = {
    "s.whatsapp.net": "phone",
    "c.us": "phone",  # whatsapp-web.js and WAHA spelling of s.whatsapp.net
    "lid": "lid",
    "g.us": "group",
    "broadcast": "broadcast",
    "newsletter": "newsletter",
    "hosted": "hosted",
    "hosted.lid": "hosted_lid",
    "bot": "bot",
    "call": "call",
}
# Meta AI and its test bots write from ordinary phone-number JIDs (Baileys `isJidBot`).
_BOT_USER = re.compile(r"1313555\d{4}|131655500\d{2}")
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class Jid:
    """A decoded JID; `device` 0 (or None) is the phone itself, others are linked devices."""

    user: str
    server: str
    agent: int | None = None
    device: int | None = None

    @property
    def kind(self) -> JidKind:
        kind = _KIND_BY_SERVER.get(self.server, "other")
        if kind == "phone" and _BOT_USER.fullmatch(self.user):
            return "bot"
        return kind

    @property
    def bare(self) -> str:
        """`user@server` without agent and device: the same person on any of their devices."""
        return f"{self.user}@{self.server}"

    @property
    def is_status(self) -> bool:
        return self.bare == STATUS_BROADCAST


def _small_int(part: str) -> int | None:
    return int(part) if _DIGITS.fullmatch(part) and len(part) <= 9 else None


def parse_jid(raw: str) -> Jid | None:
    """Decode like Baileys' `jidDecode`; None when `raw` is not a JID."""
    user_part, at, server = raw.partition("@")
    if not at or not server or "@" in server:
        return None
    user_agent, colon, device_part = user_part.partition(":")
    user, underscore, agent_part = user_agent.partition("_")
    device = _small_int(device_part) if colon else None
    agent = _small_int(agent_part) if underscore else None
    if (colon and device is None) or (underscore and agent is None):
        return None
    return Jid(user=user, server=server, agent=agent, device=device)


def jid_kind(raw: str) -> JidKind | None:
    jid = parse_jid(raw)
    return None if jid is None else jid.kind


def strip_device(raw: str) -> str | None:
    """`raw` without its agent and device parts (`5511…:12@s.whatsapp.net` → `5511…@…`)."""
    jid = parse_jid(raw)
    return None if jid is None else jid.bare


def phone_of(raw: str) -> str | None:
    """The phone digits of a phone-number JID (also `c.us` and `hosted`), else None.

    The digits are exactly as WhatsApp keys the account: a legacy Brazilian mobile keeps
    its 8-digit form (see `identity.phone_key`).
    """
    jid = parse_jid(raw)
    if jid is None or jid.kind not in ("phone", "hosted") or not _DIGITS.fullmatch(jid.user):
        return None
    return jid.user


def lid_of(raw: str) -> str | None:
    """The LID user of an `@lid` (or `@hosted.lid`) JID, else None."""
    jid = parse_jid(raw)
    if jid is None or jid.kind not in ("lid", "hosted_lid") or not _DIGITS.fullmatch(jid.user):
        return None
    return jid.user
