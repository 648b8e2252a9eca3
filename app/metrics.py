"""Prometheus metrics, defined once here so every module counts into the same series.

Names follow Prometheus conventions (``_total`` for counters, base units). Exposed at
``GET /metrics``.
"""

from __future__ import annotations

import functools
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

CONNECTIONS = Gauge("gateway_connections", "Open client connections on this node", ["transport"], registry=REGISTRY)
MESSAGES_RECEIVED = Counter(
    "gateway_messages_received_total", "Client messages received, by type", ["type"], registry=REGISTRY
)
MESSAGES_SENT = Counter(
    "gateway_messages_sent_total", "Envelopes emitted by this node, by type", ["type"], registry=REGISTRY
)
ERRORS = Counter("gateway_errors_total", "Errors answered to clients, by code", ["code"], registry=REGISTRY)
ROOMS = Gauge("gateway_rooms", "Rooms with at least one member on this node", registry=REGISTRY)
REDIS_PUBLISH_FAILURES = Counter(
    "gateway_redis_publish_failures_total",
    "Entries whose write to the cluster bus failed (kept in the outbox and written again)",
    registry=REGISTRY,
)
BUS_DROPPED = Counter(
    "gateway_bus_dropped_total", "Cluster bus entries this node could not use, by reason", ["reason"], registry=REGISTRY
)
BUS_DUPLICATES = Counter(
    "gateway_bus_duplicates_total", "Second copies of bus entries (retried writes) skipped", registry=REGISTRY
)
BUS_REFUSED = Counter(
    "gateway_bus_refused_total", "Messages refused (503) because the outbox was past its bound", registry=REGISTRY
)
BUS_GAPS = Counter(
    "gateway_bus_gaps_total",
    "Times this node relinked to a bus stream that no longer held everything it had not read",
    registry=REGISTRY,
)
BRIDGE_DROPPED = Counter(
    "gateway_bridge_dropped_total",
    "Malformed payloads dropped from the websocket:* Redis channels",
    ["reason"],
    registry=REGISTRY,
)
EVENT_LATENCY = Histogram(
    "gateway_event_handling_seconds",
    "Time to handle one client event",
    ["type"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
    registry=REGISTRY,
)


@functools.lru_cache(maxsize=4096)
def labelled(metric: Any, value: str) -> Any:
    """``metric.labels(value)``, cached: prometheus-client takes a lock and builds a key on every
    ``labels()`` call, which shows in profiles of the per-message path."""
    return metric.labels(value)


SENT_TYPES = frozenset(
    {
        "welcome",
        "pong",
        "error",
        "presence",
        "room_message",
        "user_message",
        "system",
        "notification",
        "data_update",
        "user_status",
    }
)
"""The documented server-originated types, counted under their own label; back ends may send
any type, and each distinct label would be a series of its own (memory, scrape size)."""
OTHER_TYPE = "other"
_SENT = {type_: MESSAGES_SENT.labels(type_) for type_ in (*SENT_TYPES, OTHER_TYPE)}
_SENT_OTHER = _SENT[OTHER_TYPE]


def sent_counter(type_: str) -> Any:
    """The ``gateway_messages_sent_total`` child for an envelope type (``other`` for any type
    not documented); one dict lookup, as it runs once per emit."""
    return _SENT.get(type_, _SENT_OTHER)
