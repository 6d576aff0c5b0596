"""`GET /metrics`: the Prometheus text exposition of every zapvet metric (docs/metrics.md).

Job counters and durations come from the Redis hash the workers add to (metrics.py); agent
turns, tokens, sends, delivery statuses, escalations, ungrounded facts and the instances'
connections from the tables that already record them; queue depth and the seed's alerts
from the queue itself, at scrape time (handed in by the caller).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from zapvet.otel.metrics import BUCKETS, ZERO_FILLED, field, key
from zapvet.pricing import DEFAULT_TRANSCRIBE_MODEL, PriceTable, Usage


def _parse(raw: dict[Any, Any]) -> Iterable[tuple[str, str, dict[str, str], str, float]]:
    for field_, value in raw.items():
        field_text = field_.decode() if isinstance(field_, bytes) else str(field_)
        kind, name, pairs, bucket = field_text.split("|")
        labels = dict(pair.split("=", 1) for pair in pairs.split(",") if pair)
        yield kind, name, labels, bucket, float(value)


def _from_redis(raw: dict[Any, Any]) -> list[Metric]:
    counters: dict[str, CounterMetricFamily] = {}
    hists: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, float]] = {}
    zeros = {field("c", n, labels): 0 for n, series in ZERO_FILLED.items() for labels in series}
    present = {f.decode() if isinstance(f, bytes) else str(f) for f in raw}
    raw = {**{f: v for f, v in zeros.items() if f not in present}, **raw}
    for kind, name, labels, bucket, value in _parse(raw):
        if kind == "c":
            counter = counters.setdefault(
                name, CounterMetricFamily(name.removesuffix("_total"), name, labels=sorted(labels))
            )
            counter.add_metric([labels[k] for k in sorted(labels)], value)
        else:
            slot = "sum" if kind == "s" else bucket
            entry = hists.setdefault((name, tuple(sorted(labels.items()))), {})
            entry[slot] = entry.get(slot, 0.0) + value
    grouped: dict[str, HistogramMetricFamily] = {}
    for (name, pairs), entry in hists.items():
        histogram = grouped.setdefault(
            name, HistogramMetricFamily(name, name, labels=[k for k, _ in pairs])
        )
        running, buckets = 0.0, []
        for edge in BUCKETS:
            running += entry.get(str(edge), 0.0)
            buckets.append(("+Inf" if math.isinf(edge) else str(edge), running))
        histogram.add_metric([v for _, v in pairs], buckets, entry.get("sum", 0.0))
    return [*counters.values(), *grouped.values()]


_DB = {
    "turns": "SELECT ai_type, status, count(*) FROM ai_interactions GROUP BY 1, 2",
    "tokens": "SELECT coalesce(model, 'unknown'), sum(input_tokens), sum(output_tokens), "
    "sum(cached_input_tokens) FROM ai_interactions GROUP BY 1",
    "ungrounded": "SELECT ai_type, sum(ungrounded_facts) FROM ai_interactions GROUP BY 1",
    "sends": "SELECT status, count(*) FROM messages WHERE direction = 'outgoing' AND sent_by_ai "
    "AND status IN ('sent', 'delivered', 'read', 'failed') GROUP BY 1",
    "escalations": "SELECT count(*) FROM conversations WHERE escalated_at IS NOT NULL",
    # A failed reply with a provider id was accepted by the gateway and failed afterwards
    # (Evolution messages.update ERROR, Cloud statuses "failed"); without one it was refused.
    "failed_recent": "SELECT whatsapp_message_id IS NOT NULL, count(*) FROM messages "
    "WHERE direction = 'outgoing' AND sent_by_ai AND status = 'failed' "
    "AND updated_at > now() - interval '1 hour' GROUP BY 1",
    # Active instances that reported their connection (Evolution; the Cloud API reports none).
    "connections": "SELECT o.slug, w.instance, c.state, extract(epoch FROM c.changed_at) "
    "FROM instance_connections c JOIN whatsapp_instances w ON w.id = c.instance_id "
    "JOIN organizations o ON o.id = c.organization_id WHERE w.is_active",
    # Outgoing webhooks: deliveries by state per organization, and endpoints disabled by a 410.
    "webhooks": "SELECT o.slug, d.status, count(*) FROM webhook_deliveries d "
    "JOIN organizations o ON o.id = d.organization_id GROUP BY 1, 2",
    "webhooks_disabled": "SELECT o.slug, count(*) FROM webhook_endpoints e "
    "JOIN organizations o ON o.id = e.organization_id "
    "WHERE e.enabled AND e.disabled_at IS NOT NULL GROUP BY 1",
    "durations": "SELECT ai_type, duration_ms FROM ai_interactions WHERE duration_ms IS NOT NULL",
    # Joined to organizations: a slug label only for organizations in the database.
    "costs": "SELECT o.slug, i.model, sum(i.input_tokens), sum(i.cached_input_tokens), "
    "sum(i.output_tokens), sum(i.audio_seconds::numeric), s.pricing, s.transcribe_model "
    "FROM ai_interactions i JOIN organizations o ON o.id = i.organization_id "
    "LEFT JOIN ai_settings s ON s.organization_id = i.organization_id "
    "GROUP BY o.slug, i.model, s.pricing, s.transcribe_model",
}


def _costs(rows: Sequence[Any], transcribe_model: str) -> list[Metric]:
    """Tokens and cost (reais) per organization and priced model, at scrape time from the
    same rows and price tables as `zapvet stats --org`. Cardinality: organizations in the
    database × (the organization's price table's models + "other") × token type."""
    tokens: dict[tuple[str, str, str], int] = {}
    cost: dict[tuple[str, str], float] = {}
    for slug, model, sent, cached, received, audio, stored, org_audio in rows:
        table = PriceTable().overridden(stored)
        audio_model = org_audio or transcribe_model
        chat = table.lookup(model) or "other"
        for kind, amount in (("input", sent), ("cached", cached), ("output", received)):
            tokens[slug, chat, kind] = tokens.get((slug, chat, kind), 0) + int(amount or 0)
        usage = Usage(int(sent or 0), int(cached or 0), int(received or 0))
        cost[slug, chat] = cost.get((slug, chat), 0.0) + float(table.cost_brl(model, usage, None))
        if audio:
            heard = table.lookup(audio_model) or "other"
            spoken = Usage(audio_seconds=audio)
            cost[slug, heard] = cost.get((slug, heard), 0.0) + float(
                table.cost_brl(None, spoken, audio_model)
            )
    token_family = CounterMetricFamily(
        "zapvet_ai_tokens",
        "LLM tokens per organization",
        labels=["organization", "model", "type"],
    )
    for (slug, model, kind), amount in sorted(tokens.items()):
        token_family.add_metric([slug, model, kind], amount)
    cost_family = CounterMetricFamily(
        "zapvet_ai_cost_brl",
        "AI cost in reais per organization (price table in zapvet.pricing and [pricing])",
        labels=["organization", "model"],
    )
    for (slug, model), amount in sorted(cost.items()):
        cost_family.add_metric([slug, model], amount)
    return [token_family, cost_family]


async def _from_database(
    sessions: async_sessionmaker[AsyncSession], transcribe_model: str = DEFAULT_TRANSCRIBE_MODEL
) -> list[Metric]:
    async with sessions() as session:
        found = {
            name: (await session.exec(text(sql))).all()  # type: ignore[call-overload]
            for name, sql in _DB.items()
            if name != "durations"
        }
        durations = await session.exec(  # type: ignore[call-overload]
            text(
                "SELECT ai_type, "
                + ", ".join(
                    f"count(*) FILTER (WHERE duration_ms <= {edge * 1000:.0f})"
                    for edge in BUCKETS[:-1]
                )
                + ", count(*), coalesce(sum(duration_ms), 0) FROM ai_interactions "
                "WHERE duration_ms IS NOT NULL GROUP BY 1"
            )
        )
        duration_rows = durations.all()
    turns = CounterMetricFamily("zapvet_turns", "agent turns", labels=["agent", "status"])
    for agent, status, total in found["turns"]:
        turns.add_metric([agent, status], total)
    tokens = CounterMetricFamily("zapvet_llm_tokens", "LLM tokens", labels=["model", "type"])
    for model, sent, received, cached in found["tokens"]:
        tokens.add_metric([model, "input"], sent or 0)
        tokens.add_metric([model, "output"], received or 0)
        tokens.add_metric([model, "cached"], cached or 0)
    ungrounded = CounterMetricFamily(
        "zapvet_ungrounded_facts", "ungrounded facts", labels=["agent"]
    )
    for agent, total in found["ungrounded"]:
        ungrounded.add_metric([agent], total or 0)
    sends = CounterMetricFamily("zapvet_sends", "replies by outcome", labels=["outcome"])
    outcomes = {"sent": 0, "failed": 0}
    for status, total in found["sends"]:
        outcomes["failed" if status == "failed" else "sent"] += total
    for outcome, total in outcomes.items():
        sends.add_metric([outcome], total)
    replies = GaugeMetricFamily(
        "zapvet_replies", "the AI's replies by their latest delivery status", labels=["status"]
    )
    statuses = dict.fromkeys(("sent", "delivered", "read", "failed"), 0)
    for status, total in found["sends"]:
        statuses[status] = statuses.get(status, 0) + total
    for status, total in statuses.items():
        replies.add_metric([status], total)
    failed_recent = GaugeMetricFamily(
        "zapvet_replies_failed_last_hour",
        "the AI's replies that failed in the last hour, refused or after the gateway accepted",
        labels=["stage"],
    )
    stages = {"refused": 0, "after_acceptance": 0}
    for accepted, total in found["failed_recent"]:
        stages["after_acceptance" if accepted else "refused"] += total
    for stage, total in stages.items():
        failed_recent.add_metric([stage], total)
    escalations = CounterMetricFamily("zapvet_escalations", "conversations handed to a person")
    escalations.add_metric([], found["escalations"][0][0])
    histogram = HistogramMetricFamily(
        "zapvet_turn_duration_seconds", "turn duration", labels=["agent"]
    )
    for agent, *counts in duration_rows:
        *cumulative, total, summed = counts
        buckets = [(str(edge), float(n)) for edge, n in zip(BUCKETS[:-1], cumulative, strict=True)]
        buckets.append(("+Inf", float(total)))
        histogram.add_metric([agent], buckets, float(summed) / 1000)
    costs = _costs(found["costs"], transcribe_model)
    health = [
        replies,
        failed_recent,
        *_connections(found["connections"]),
        *_webhooks(found["webhooks"], found["webhooks_disabled"]),
    ]
    return [turns, tokens, ungrounded, sends, escalations, histogram, *costs, *health]


#: Evolution's states as `zapvet_instance_connection` labels them (models.whatsapp).
CONNECTION_STATES = ("open", "connecting", "close", "refused", "qrcode")


def _connections(rows: Sequence[Any]) -> list[Metric]:
    """One 0/1 series per state for each instance, so that an alert can say `state != open`
    and a dashboard can stack them; and when the state last changed."""
    state = GaugeMetricFamily(
        "zapvet_instance_connection",
        "1 for the state the gateway last reported for the instance",
        labels=["organization", "instance", "state"],
    )
    changed = GaugeMetricFamily(
        "zapvet_instance_connection_changed_timestamp_seconds",
        "when the instance's connection state last changed (Unix time)",
        labels=["organization", "instance"],
    )
    for slug, instance, current, since in sorted(rows):
        for name in CONNECTION_STATES:
            state.add_metric([slug, instance, name], 1.0 if name == current else 0.0)
        changed.add_metric([slug, instance], float(since))
    return [state, changed]


#: A delivery's states (models.webhook): waiting (`pending`, `queued`), `delivered`, `dead`.
DELIVERY_STATES = ("pending", "queued", "delivered", "dead")


def _webhooks(rows: Sequence[Any], disabled: Sequence[Any]) -> list[Metric]:
    """Webhook deliveries per organization and state (every state, 0 included, for each
    organization that has any), and endpoints a 410 disabled."""
    counts: dict[tuple[str, str], int] = {}
    for slug, status, total in rows:
        for name in DELIVERY_STATES:
            counts.setdefault((slug, name), 0)
        counts[slug, status] = int(total)
    deliveries = GaugeMetricFamily(
        "zapvet_webhook_deliveries",
        "outgoing webhook deliveries by state",
        labels=["organization", "status"],
    )
    for (slug, status), total in sorted(counts.items()):
        deliveries.add_metric([slug, status], total)
    gone = GaugeMetricFamily(
        "zapvet_webhook_endpoints_disabled",
        "webhook endpoints disabled because their receiver answered 410 Gone",
        labels=["organization"],
    )
    for slug, total in sorted(disabled):
        gone.add_metric([slug], int(total))
    return [deliveries, gone]


async def render(
    sessions: async_sessionmaker[AsyncSession],
    client: aioredis.Redis,
    namespace: str,
    *,
    queue: Sequence[Metric] = (),
    transcribe_model: str = DEFAULT_TRANSCRIBE_MODEL,
) -> bytes:
    """The Prometheus text exposition of every zapvet metric.

    `queue` holds the queue's own gauges, read by the caller (`queue/stats.py`): the queue sits
    above this module, so its figures are handed in rather than imported.
    """
    families = list(queue)
    families += _from_redis(await client.hgetall(key(namespace)))
    families += await _from_database(sessions, transcribe_model)

    class _Collected:
        def collect(self) -> Iterable[Metric]:
            return families

    registry = CollectorRegistry()
    registry.register(_Collected())
    return generate_latest(registry)
