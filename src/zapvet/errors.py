"""The one exception tree of zapvet.

    ZapvetError
    ├── ConfigError              a setting is missing or invalid (names the variable)
    ├── EmbeddedServiceError     an embedded PostgreSQL or Redis could not start or stop
    ├── OrgFileError             an organization file is invalid (one or more OrgFileProblem)
    ├── ScenarioError            a scenario file for `zapvet eval` is missing or invalid
    ├── ChatError                `zapvet chat` finds no such organization or Evolution instance
    │   └── AttachmentError      a typed /audio, /image, /document cannot be sent (nothing sent)
    ├── StudioContextError       no organization for a LangGraph Studio context
    ├── PhoenixError             Phoenix is not installed or did not start
    ├── MediaError               a media file could not be fetched or read
    │   ├── MediaUnavailable     gone for good: 4xx, expired URL, sha256 mismatch, bad base64
    │   ├── MediaTransient       worth retrying later: 5xx, 429, timeout, lost connection
    │   ├── MediaTooLarge        over the kind's byte limit; size, limit
    │   └── UnreadableDocument   a PDF that cannot be read (encrypted or broken)
    ├── TranscriptionFailed      speech-to-text failed; transient (5xx, timeout) or not (4xx)
    ├── TransientError           worth retrying: the world may be different in a moment
    │   └── SendError            a send failed on the way (timeout, 5xx, 429); status, detail
    └── PermanentError           retrying cannot help; fail the work at once
        ├── UnknownOrganization  no organization has this id (a cached configuration's read)
        ├── RejectedSend         the provider refused a send for good; status, detail, code
        ├── PayloadError         a webhook body is not what the provider sends (422); message
        ├── ScriptExhaustedError a scripted model was called more often than it has replies
        ├── OwnerNumberRefused   an owner number cannot be blocked; phone
        ├── TargetRefused        a webhook URL, or an address it resolves to, is not allowed
        └── ToolError            an agent tool refused; `message` is pt-BR text for the model
            └── SlotTakenError   the requested time is not (or no longer) free; has alternatives

Three signals, each caught in the module that raises it or its caller, subclass it too:
`bridge.app._Refused` (PermanentError: a body refused before parsing, with its response),
`bridge.instances.Refused` (PermanentError: an unknown or inactive instance, or wrong
credentials) and `queue.drain._Raced` (ZapvetError: another drain answered first; roll back).
The leaves are re-exported where they are raised (`bridge.senders`, `bridge.events`,
`llm.scripted`, `chat`, `evals.scenario`, `commands.blocking`, `graphs.studio`,
`otel.phoenix`, `media`, `models.config`, `webhooks.targets`).

Errors carry fields, not formatted strings; `str(error)` renders them for people.
HTTP status mapping lives in `zapvet.bridge` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zapvet.cleaning import clean_text


class ZapvetError(Exception):
    """Root of every error zapvet raises on purpose."""


class ConfigError(ZapvetError):
    """A setting is missing or invalid."""

    def __init__(self, variable: str, reason: str) -> None:
        self.variable = variable
        self.reason = reason
        super().__init__(f"{variable}: {reason}")


class EmbeddedServiceError(ZapvetError):
    """An embedded server could not be started or reached."""

    def __init__(self, service: str, reason: str, log_path: Path | None = None) -> None:
        self.service = service
        self.reason = reason
        self.log_path = log_path
        hint = f" (see {log_path})" if log_path else ""
        super().__init__(f"embedded {service}: {reason}{hint}")


@dataclass(frozen=True)
class OrgFileProblem:
    """One thing wrong in an organization file, located by key path and line."""

    key: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.key}: {self.message}" if self.key else f"{where}{self.message}"


class OrgFileError(ZapvetError):
    """An organization file cannot be applied; nothing was written."""

    def __init__(self, path: Path | str, problems: list[OrgFileProblem]) -> None:
        self.path = Path(path)
        self.problems = problems
        listing = "\n".join(f"  {self.path}:{p}" for p in problems)
        super().__init__(f"{self.path} is not a valid organization file:\n{listing}")


class ScenarioError(ZapvetError):
    """A scenario file is missing or invalid."""


class ChatError(ZapvetError):
    """The organization or its Evolution instance cannot be found."""


class AttachmentError(ChatError):
    """A command typed into `zapvet chat` cannot be sent: unknown, or its file is missing,
    unreadable or too big for the bridge. Nothing was sent; the chat goes on."""


class StudioContextError(ZapvetError):
    """The organization named for a Studio context does not exist."""


class PhoenixError(ZapvetError):
    """Phoenix is missing or did not start."""


class MediaError(ZapvetError):
    """A media file could not be fetched or read; the subclass says whether to retry."""


class MediaUnavailable(MediaError):
    """The media is gone or not what was promised (404, 410, expired URL, sha256 mismatch,
    bad base64); retrying cannot help."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        self.reason = reason
        self.status = status
        super().__init__(_http(status, reason))


class MediaTransient(MediaError):
    """The download may succeed later: 5xx, 429, a timeout or a lost connection."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        self.reason = reason
        self.status = status
        super().__init__(_http(status, reason))


class MediaTooLarge(MediaError):
    """The media is larger than its kind's limit; it is not downloaded (any further)."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"{size} bytes, over the limit of {limit}")


class UnreadableDocument(MediaError):
    """A PDF that cannot be read: encrypted, or not a PDF at all."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class TranscriptionFailed(ZapvetError):
    """Speech-to-text failed; `transient` is True for 5xx, 429 and timeouts (retry later)."""

    def __init__(self, reason: str, *, transient: bool, status: int | None = None) -> None:
        self.reason = reason
        self.transient = transient
        self.status = status
        super().__init__(_http(status, reason))


class TransientError(ZapvetError):
    """A failure that may succeed when retried (timeouts, 5xx, lost connections)."""


def _http(status: int | None, detail: str) -> str:
    return f"HTTP {status}: {detail}" if status is not None else detail


class SendError(TransientError):
    """The send may succeed if retried: no answer in time, a dropped connection, 5xx or 429."""

    def __init__(self, status: int | None, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(_http(status, detail))


class PermanentError(ZapvetError):
    """A failure that retrying cannot fix (bad input, 4xx, missing rows)."""


class UnknownOrganization(PermanentError):
    """No organization has this id."""

    def __init__(self, organization_id: int) -> None:
        self.organization_id = organization_id
        super().__init__(f"no organization with id {organization_id}")


class RejectedSend(PermanentError):
    """The provider refused the message and will refuse it again; do not retry.

    `code` is the provider's own error code where it gives one (the Cloud API's 131047:
    outside the 24-hour window; 132000–132016: the template is wrong or not approved).
    """

    def __init__(self, status: int | None, detail: str, *, code: int | None = None) -> None:
        self.status = status
        self.detail = detail
        self.code = code
        super().__init__(_http(status, detail))


class PayloadError(PermanentError):
    """The payload is not what the provider sends; the webhook answers 422 with `message`."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class ScriptExhaustedError(PermanentError):
    """The model was called more often than its script has replies."""


class OwnerNumberRefused(PermanentError):
    """`phone` is an active owner number of the organization: it is never blocked."""

    def __init__(self, phone: str) -> None:
        self.phone = phone
        super().__init__(f"+{phone} is an owner number and cannot be blocked")


class TargetRefused(PermanentError, ValueError):
    """A webhook URL may not receive events (not https, or a private, loopback or link-local
    address among those its host resolves to); the message says why and what to do. A
    ValueError too, so the organization file's validation reports it with its key."""


class ToolError(PermanentError):
    """A tool could not do what the model asked; `message` may be relayed to the customer."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class SlotTakenError(ToolError):
    """The requested start is taken or outside the bookable hours; `alternatives` are free."""

    def __init__(self, message: str, alternatives: list[str]) -> None:
        self.alternatives = alternatives
        super().__init__(message)


def describe(error: BaseException) -> str:
    """A short, single-line account of `error` for a record such as `ai_interactions`."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return clean_text(f"{type(error).__name__}: {first}", limit=500)
