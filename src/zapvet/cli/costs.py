"""`zapvet stats --org SLUG`: one organization's AI turns, tokens and cost for a month, and
the Cloud API template errors of that month."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import typer

from zapvet.analytics.costs import CostFigures, CostReport
from zapvet.cli.environment import command_settings, fail, services_for
from zapvet.money import format_brl, format_percent

if TYPE_CHECKING:
    from zapvet.proactive.templates import TemplateFailures

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def parse_month(text: str | None, today: date) -> tuple[int, int]:
    """(year, month) of "YYYY-MM", or of `today` when not given.

    Raises:
        ValueError: not a month like 2026-11.
    """
    if text is None:
        return today.year, today.month
    match = _MONTH.match(text.strip())
    if not match:
        raise ValueError(f"expected a month like 2026-11, got {text!r}")
    return int(match[1]), int(match[2])


def _figures_json(figures: CostFigures) -> dict[str, Any]:
    return {
        "turns": figures.turns,
        "input_tokens": figures.input_tokens,
        "cached_input_tokens": figures.cached_input_tokens,
        "output_tokens": figures.output_tokens,
        "cache_hit_share": float(figures.cache_hit_share),
        "audio_minutes": float(figures.audio_minutes),
        "images": figures.images,
        "cost_cents": figures.cost_cents,
    }


def report_json(
    slug: str, month: str, report: CostReport, failures: TemplateFailures
) -> dict[str, Any]:
    return {
        "organization": slug,
        "month": month,
        "start": report.start.isoformat(),
        "end": report.end.isoformat(),
        "usd_brl": str(report.usd_brl),
        **_figures_json(report.total),
        "per_agent": {name: _figures_json(f) for name, f in sorted(report.per_agent.items())},
        "per_day": {day.isoformat(): _figures_json(f) for day, f in report.per_day.items()},
        "per_model": {name: _figures_json(f) for name, f in sorted(report.per_model.items())},
        "unpriced_models": sorted(report.unpriced_models),
        "monthly_budget_cents": report.monthly_budget_cents,
        "budget_used_share": None if report.budget_share is None else float(report.budget_share),
        "template_failures": {
            "count": failures.count,
            "last_error": failures.last_error,
            "last_at": None if failures.last_at is None else failures.last_at.isoformat(),
        },
    }


def report_lines(
    slug: str, month: str, report: CostReport, failures: TemplateFailures
) -> list[str]:
    """The table `zapvet stats --org` prints."""
    header = (
        f"{'':<12} {'turns':>6} {'input':>10} {'cached':>10} {'cache %':>8} "
        f"{'output':>10} {'audio min':>9} {'images':>6} {'cost':>14}"
    )

    def row(label: str, f: CostFigures) -> str:
        return (
            f"{label:<12} {f.turns:>6} {f.input_tokens:>10} {f.cached_input_tokens:>10} "
            f"{format_percent(f.cache_hit_share):>8} {f.output_tokens:>10} {f.audio_minutes:>9} "
            f"{f.images:>6} {format_brl(f.cost_cents):>14}"
        )

    lines = [
        f"{slug} · {month} ({report.start:%d/%m} a {report.end:%d/%m}) · "
        f"US$ 1 = R$ {str(report.usd_brl).replace('.', ',')}",
        header,
        row("total", report.total),
        "by agent",
        *(row(f"  {name}", f) for name, f in sorted(report.per_agent.items())),
        "by day",
        *(row(f"  {day:%d/%m}", f) for day, f in report.per_day.items()),
    ]
    if not report.per_day:
        lines.append("  (no AI turns this month)")
    if report.monthly_budget_cents is not None:
        used = report.budget_share
        lines.append(
            f"monthly budget {format_brl(report.monthly_budget_cents)}"
            + ("" if used is None else f" · {format_percent(used)} used")
        )
    if failures.count:
        lines.append(f"template errors (Cloud API): {failures.count} · last: {failures.last_error}")
    if report.unpriced_models:
        lines.append(
            "sem preço (priced at R$ 0,00, add them to [pricing]): "
            + ", ".join(sorted(report.unpriced_models))
        )
    return lines


def org_stats(slug: str, month: str | None, json_output: bool) -> None:
    """Print one organization's AI usage and cost for a month (default: the current one)."""
    import asyncio
    import json

    from sqlmodel import select

    from zapvet import db
    from zapvet.analytics.costs import ai_costs, month_bounds
    from zapvet.models import Organization
    from zapvet.proactive.templates import template_failures

    settings = command_settings()

    async def read(url: str) -> tuple[str, CostReport, TemplateFailures] | str:
        engine = db.build_async_engine(url, pool_size=1)
        try:
            async with db.async_session_maker(engine)() as session:
                org = (
                    await session.exec(select(Organization).where(Organization.slug == slug))
                ).first()
                if org is None or org.id is None:
                    return f"no organization with slug {slug!r}"
                zone = ZoneInfo(org.timezone)
                try:
                    year, number = parse_month(month, datetime.now(zone).date())
                except ValueError as exc:
                    return str(exc)
                start, end = month_bounds(year, number)
                report = await ai_costs(
                    session,
                    org.id,
                    zone,
                    start,
                    end,
                    transcribe_model=settings.transcribe_model,
                )
                failures = await template_failures(
                    session,
                    org.id,
                    datetime.combine(start, time(0), zone),
                    datetime.combine(end + timedelta(days=1), time(0), zone),
                )
                return f"{year:04d}-{number:02d}", report, failures
        finally:
            await engine.dispose()

    if month is not None and not _MONTH.match(month.strip()):
        fail(f"expected a month like 2026-11, got {month!r}", "use --month YYYY-MM", 2)
    with services_for(settings) as services:
        found = asyncio.run(read(services.database_url))
    if isinstance(found, str):
        fail(found, "use the [organization] slug of an applied organization file")
    label, report, failures = found
    if json_output:
        typer.echo(json.dumps(report_json(slug, label, report, failures)))
        return
    for line in report_lines(slug, label, report, failures):
        typer.echo(line)
