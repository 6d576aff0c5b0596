"""A month of AI usage for one organization: rows whose cost tests compute independently."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session

from zapvet.models import AIInteraction, Organization

#: (agent, model, input, cached, output, audio seconds, images, created at UTC). São Paulo is
#: UTC-3: the second row is on 2 November locally, the last two sit just inside and outside
#: November's local bounds.
ROWS = [
    ("client", "gpt-4o-mini", 10_000_000, 4_000_000, 2_000_000, 600.0, 1, "2026-11-03T12:00"),
    ("client", "gpt-4o-mini-2024-07-18", 2_000_000, 0, 500_000, 0.0, 0, "2026-11-03T02:30"),
    ("aurora", "gpt-4o", 300_000, 100_000, 50_000, 0.0, 0, "2026-11-10T15:00"),
    ("client", "mystery-model", 1_000, 0, 100, 0.0, 2, "2026-11-11T15:00"),
    ("client", "gpt-4o-mini", 1_000_000, 500_000, 100_000, 30.0, 0, "2026-12-01T02:59"),
    ("client", "gpt-4o-mini", 9_000_000, 0, 9_000_000, 0.0, 0, "2026-11-01T02:59"),
]


def seed_ai_usage(session: Session, org: Organization, scale: int = 1) -> None:
    """`ROWS` for `org`, token counts multiplied by `scale` (another organization's)."""
    assert org.id is not None
    for agent, model, sent, cached, received, audio, images, at in ROWS:
        session.add(
            AIInteraction(
                organization_id=org.id,
                ai_type=agent,  # type: ignore[arg-type]
                status="success",
                model=model,
                input_tokens=sent * scale,
                cached_input_tokens=cached * scale,
                output_tokens=received * scale,
                audio_seconds=audio * scale,
                images=images * scale,
                created_at=datetime.fromisoformat(at).replace(tzinfo=UTC),
            )
        )
    session.commit()
