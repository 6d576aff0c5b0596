"""Apply an organization file to the database, idempotently, in one transaction.

Rows are matched by natural keys (slug, service and resource names, phone keys, instance
names, dates), updated only where a value differs, and deactivated rather than deleted
when they leave the file, because appointments and messages still point at them.
Applying the same file twice writes nothing and reports no changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time
from typing import Any

from sqlmodel import Session, select

from zapvet.bridge.identity import phone_key
from zapvet.errors import OrgFileError, OrgFileProblem
from zapvet.models import (
    AISettings,
    AuroraOwnerNumber,
    BusinessHours,
    Closure,
    Organization,
    Resource,
    ResourceService,
    Service,
    WebhookEndpoint,
    WhatsAppInstance,
    WhatsAppTemplate,
)
from zapvet.models.schedule import WEEKDAYS
from zapvet.money import format_brl
from zapvet.org.spec import OrgSpec, parse_hhmm
from zapvet.org.templates import TEMPLATE_KINDS, TemplateKind
from zapvet.pricing import stored_pricing
from zapvet.webhooks.targets import TargetRefused, check_config

_SECRETS = {"api_key", "webhook_token", "access_token", "app_secret", "verify_token", "secret"}
CLOUD_GRAPH_URL = "https://graph.facebook.com/v21.0"


@dataclass
class ApplyReport:
    """What an apply did: the organization, one line per change (empty: nothing), and what
    the file leaves undone that the operator should know (applied all the same)."""

    organization_id: int
    slug: str
    created: bool = False
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _show(name: str, value: Any) -> str:
    if name in _SECRETS:
        return "***"
    if name in ("price_cents", "monthly_budget_cents") and isinstance(value, int):
        return format_brl(value)
    return repr(value)


def _sync(row: Any, values: dict[str, Any], label: str, changes: list[str]) -> None:
    """Set the attributes of `row` that differ from `values`, recording each change."""
    for name, value in values.items():
        old = getattr(row, name)
        if old != value:
            setattr(row, name, value)
            # AISettings is keyed by organization_id (no id): its updates are changes too.
            stored = getattr(row, "id", None) is not None or isinstance(row, AISettings)
            if stored or name == "is_active":
                changes.append(f"{label}: {name} {_show(name, old)} → {_show(name, value)}")


def _org_rows(session: Session, model: Any, organization_id: int) -> list[Any]:
    return list(session.exec(select(model).where(model.organization_id == organization_id)))


def apply_spec(session: Session, spec: OrgSpec) -> ApplyReport:
    """Create or update the organization described by `spec` inside `session`'s transaction.

    Raises:
        OrgFileError: a WhatsApp instance in the file belongs to another organization.
    """
    section = spec.organization
    org = session.exec(select(Organization).where(Organization.slug == section.slug)).first()
    report = ApplyReport(organization_id=0, slug=section.slug, created=org is None)
    changes = report.changes
    org_values: dict[str, Any] = {
        "name": section.name,
        "timezone": section.timezone,
        "slot_minutes": spec.booking.slot_minutes,
        "min_lead_minutes": spec.booking.min_lead_minutes,
        "booking_horizon_days": spec.booking.horizon_days,
    }
    if org is None:
        org = Organization(slug=section.slug, **org_values)
        session.add(org)
        session.flush()
        changes.append(f"organization {section.slug!r} created")
    else:
        _sync(org, org_values, "organization", changes)
    assert org.id is not None
    report.organization_id = org_id = org.id

    _apply_ai(session, spec, org_id, changes)
    _apply_whatsapp(session, spec, org_id, changes)
    _apply_owners(session, spec, org_id, changes)
    services = _apply_services(session, spec, org_id, changes)
    _apply_resources(session, spec, org_id, services, changes)
    _apply_hours(session, spec, org_id, changes)
    _apply_closures(session, spec, org_id, changes)
    _apply_templates(session, spec, org_id, changes)
    report.warnings = missing_templates(spec) + _apply_webhooks(session, spec, org_id, changes)
    session.flush()
    return report


def _apply_ai(session: Session, spec: OrgSpec, org_id: int, changes: list[str]) -> None:
    quiet = spec.aurora.quiet_window()
    summary_at: time | None = (
        parse_hhmm(spec.aurora.daily_summary_at) if spec.aurora.daily_summary_at else None
    )
    values: dict[str, Any] = {
        "model": spec.ai.model,
        "temperature": spec.ai.temperature,
        "personality": spec.ai.personality,
        "debounce_seconds": spec.ai.debounce_seconds,
        "vision": spec.ai.vision,
        "transcribe_model": spec.ai.transcribe_model,
        "human_takeover_minutes": spec.ai.human_takeover_minutes,
        "read_receipts": spec.ai.read_receipts,
        "typing_indicator": spec.ai.typing_indicator,
        "confirmation_ttl_minutes": spec.aurora.confirmation_ttl_minutes,
        "reminder_minutes_before": spec.aurora.reminder_minutes_before,
        "quiet_hours_start": quiet[0] if quiet else None,
        "quiet_hours_end": quiet[1] if quiet else None,
        "daily_summary_at": summary_at,
        "pricing": stored_pricing(spec.pricing.usd_brl, spec.pricing.prices()),
        **spec.limits.stored(),
        **spec.privacy.model_dump(),
        **spec.care.stored(),
    }
    settings = session.get(AISettings, org_id)
    if settings is None:
        session.add(AISettings(organization_id=org_id, **values))
        changes.append("ai settings created")
    else:
        _sync(settings, values, "ai", changes)


def _apply_whatsapp(session: Session, spec: OrgSpec, org_id: int, changes: list[str]) -> None:
    wanted = set()
    for index, entry in enumerate(spec.whatsapp):
        key = entry.key
        wanted.add((entry.provider, key))
        row = session.exec(
            select(WhatsAppInstance).where(
                WhatsAppInstance.provider == entry.provider, WhatsAppInstance.instance == key
            )
        ).first()
        if row is not None and row.organization_id != org_id:
            raise OrgFileError(
                "<file>",
                [
                    OrgFileProblem(
                        f"whatsapp[{index + 1}]",
                        f"{entry.provider} instance {key!r} belongs to another organization",
                    )
                ],
            )
        values: dict[str, Any] = {
            "api_url": entry.api_url or CLOUD_GRAPH_URL,
            "api_key": entry.api_key,
            "webhook_token": entry.webhook_token,
            "access_token": entry.access_token,
            "app_secret": entry.app_secret,
            "verify_token": entry.verify_token,
            "phone_number_id": entry.phone_number_id,
            "is_active": True,
        }
        label = f"whatsapp {entry.provider}:{key}"
        if row is None:
            session.add(
                WhatsAppInstance(
                    organization_id=org_id, provider=entry.provider, instance=key, **values
                )
            )
            changes.append(f"{label} added")
        else:
            _sync(row, values, label, changes)
    for row in _org_rows(session, WhatsAppInstance, org_id):
        if (row.provider, row.instance) not in wanted:
            _sync(row, {"is_active": False}, f"whatsapp {row.provider}:{row.instance}", changes)


def _apply_owners(session: Session, spec: OrgSpec, org_id: int, changes: list[str]) -> None:
    existing = {row.phone_key: row for row in _org_rows(session, AuroraOwnerNumber, org_id)}
    wanted = set()
    for owner in spec.owners:
        key = phone_key(owner.phone)
        wanted.add(key)
        row = existing.get(key)
        values: dict[str, Any] = {"name": owner.name, "phone": owner.phone, "is_active": True}
        if row is None:
            session.add(AuroraOwnerNumber(organization_id=org_id, phone_key=key, **values))
            changes.append(f"owner {owner.name or key} added")
        else:
            _sync(row, values, f"owner {owner.name or key}", changes)
    for key, row in existing.items():
        if key not in wanted:
            _sync(row, {"is_active": False}, f"owner {row.name or key}", changes)


def _apply_services(
    session: Session, spec: OrgSpec, org_id: int, changes: list[str]
) -> list[Service]:
    existing = {row.name.casefold(): row for row in _org_rows(session, Service, org_id)}
    active: list[Service] = []
    for entry in spec.services:
        row = existing.pop(entry.name.casefold(), None)
        values: dict[str, Any] = {
            "name": entry.name,
            "category": entry.category,
            "duration_minutes": entry.duration_minutes,
            "price_cents": entry.price,
            "description": entry.description,
            "return_after_days": entry.return_after_days,
            "is_active": True,
        }
        if row is None:
            row = Service(organization_id=org_id, **values)
            session.add(row)
            changes.append(f"service {entry.name!r} added ({format_brl(entry.price)})")
        else:
            _sync(row, values, f"service {entry.name!r}", changes)
        active.append(row)
    for row in existing.values():
        _sync(row, {"is_active": False}, f"service {row.name!r}", changes)
    session.flush()
    return active


def _apply_resources(
    session: Session, spec: OrgSpec, org_id: int, services: list[Service], changes: list[str]
) -> None:
    existing = {row.name.casefold(): row for row in _org_rows(session, Resource, org_id)}
    wanted_links: set[tuple[int, int]] = set()
    for entry in spec.resources:
        row = existing.pop(entry.name.casefold(), None)
        values: dict[str, Any] = {"name": entry.name, "capacity": entry.capacity, "is_active": True}
        if row is None:
            row = Resource(organization_id=org_id, **values)
            session.add(row)
            session.flush()
            changes.append(f"resource {entry.name!r} added (capacity {entry.capacity})")
        else:
            _sync(row, values, f"resource {entry.name!r}", changes)
        assert row.id is not None
        performs = {item.casefold() for item in entry.services}
        for service in services:
            if {service.category.casefold(), service.name.casefold()} & performs:
                assert service.id is not None
                wanted_links.add((row.id, service.id))
    for row in existing.values():
        _sync(row, {"is_active": False}, f"resource {row.name!r}", changes)

    links = {
        (link.resource_id, link.service_id): link
        for link in _org_rows(session, ResourceService, org_id)
    }
    for pair in wanted_links - links.keys():
        session.add(
            ResourceService(organization_id=org_id, resource_id=pair[0], service_id=pair[1])
        )
    for pair in links.keys() - wanted_links:
        session.delete(links[pair])
    if wanted_links != links.keys():
        added, removed = len(wanted_links - links.keys()), len(links.keys() - wanted_links)
        changes.append(f"resource services: {added} linked, {removed} unlinked")


def _apply_hours(session: Session, spec: OrgSpec, org_id: int, changes: list[str]) -> None:
    wanted = {
        (weekday, opens, closes)
        for weekday, intervals in spec.weekly_hours().items()
        for opens, closes in intervals
    }
    rows = {
        (r.weekday, r.opens_at, r.closes_at): r for r in _org_rows(session, BusinessHours, org_id)
    }
    for key in sorted(rows.keys() - wanted):
        session.delete(rows[key])
    session.flush()
    for weekday, opens, closes in sorted(wanted - rows.keys()):
        session.add(
            BusinessHours(organization_id=org_id, weekday=weekday, opens_at=opens, closes_at=closes)
        )
    for weekday, opens, closes in sorted(wanted ^ rows.keys()):
        verb = "opens" if (weekday, opens, closes) in wanted else "no longer opens"
        changes.append(f"hours: {WEEKDAYS[weekday]} {verb} {opens:%H:%M}-{closes:%H:%M}")


def _apply_closures(session: Session, spec: OrgSpec, org_id: int, changes: list[str]) -> None:
    existing = {row.date: row for row in _org_rows(session, Closure, org_id)}
    for entry in spec.closures:
        row = existing.pop(entry.date, None)
        if row is None:
            session.add(Closure(organization_id=org_id, date=entry.date, reason=entry.reason))
            changes.append(f"closure {entry.date.isoformat()} added")
        else:
            _sync(row, {"reason": entry.reason}, f"closure {entry.date.isoformat()}", changes)
    for day, row in existing.items():
        session.delete(row)
        changes.append(f"closure {day.isoformat()} removed")


def _apply_templates(session: Session, spec: OrgSpec, org_id: int, changes: list[str]) -> None:
    existing = {row.kind: row for row in _org_rows(session, WhatsAppTemplate, org_id)}
    for entry in spec.templates:
        row = existing.pop(entry.kind, None)
        values: dict[str, Any] = {
            "name": entry.name,
            "language": entry.language,
            "parameters": list(entry.parameters),
        }
        if row is None:
            session.add(WhatsAppTemplate(organization_id=org_id, kind=entry.kind, **values))
            changes.append(f"template {entry.kind} added ({entry.name}, {entry.language})")
        else:
            _sync(row, values, f"template {entry.kind}", changes)
    for kind, row in existing.items():
        session.delete(row)
        changes.append(f"template {kind} removed")


def _apply_webhooks(session: Session, spec: OrgSpec, org_id: int, changes: list[str]) -> list[str]:
    """Endpoints by URL; one that leaves the file is disabled, not deleted (its deliveries
    are history). Each enabled URL's host is resolved and checked (`webhooks.targets`): one
    that does not resolve yet is a warning, one with a private address an error.

    Raises:
        OrgFileError: an enabled endpoint's host resolves to an address it may not use.
    """
    existing = {row.url: row for row in _org_rows(session, WebhookEndpoint, org_id)}
    warnings: list[str] = []
    for index, entry in enumerate(spec.webhooks):
        if entry.enabled:
            try:
                warning = check_config(entry.url, allow_private=entry.allow_private_targets)
            except TargetRefused as refused:
                raise OrgFileError(
                    "<file>", [OrgFileProblem(f"webhooks[{index + 1}].url", str(refused))]
                ) from None
            if warning:
                warnings.append(f"webhook {entry.url}: {warning}")
        row = existing.pop(entry.url, None)
        values: dict[str, Any] = {
            "secret": entry.secret,
            "events": list(entry.events),
            "enabled": entry.enabled,
            "allow_private_targets": entry.allow_private_targets,
        }
        if row is None:
            session.add(WebhookEndpoint(organization_id=org_id, url=entry.url, **values))
            changes.append(f"webhook {entry.url} added ({', '.join(entry.events)})")
        else:
            _sync(row, values, f"webhook {entry.url}", changes)
            if row.disabled_at is not None and entry.enabled:
                warnings.append(
                    f"webhook {entry.url} is disabled since its receiver answered 410 Gone; "
                    f"`zapvet webhooks enable --org {spec.organization.slug} {row.id}` sends to it "
                    "again"
                )
    for url, row in existing.items():
        if row.enabled:
            row.enabled = False
            changes.append(f"webhook {url} disabled (no longer in the file)")
    return warnings


def _sends(spec: OrgSpec, kind: TemplateKind) -> bool:
    """Whether the organization sends this kind at all, as far as its file says."""
    if kind == "daily_summary":
        return spec.aurora.daily_summary_at is not None
    if kind == "budget_alert":
        return spec.limits.monthly_budget_brl is not None
    return True


def missing_templates(spec: OrgSpec) -> list[str]:
    """On a Cloud API number, each proactive kind the organization sends with no template:
    outside the 24-hour window those messages are skipped (with the reason recorded)."""
    if not any(entry.provider == "cloud" for entry in spec.whatsapp):
        return []
    given = {entry.kind for entry in spec.templates}
    return [
        f"no [[templates]] for {kind}: on the Cloud API, outside the 24-hour window these "
        "messages are skipped (the reason is recorded), not sent"
        for kind in TEMPLATE_KINDS
        if kind not in given and _sends(spec, kind)
    ]
