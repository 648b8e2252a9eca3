"""Prometheus metrics, defined once here so every module counts into the same series.

Names follow Prometheus conventions (``_total`` for counters, base units). Exposed at
``GET /metrics``.

The per-message counters and the event-handling histogram are plain per-process numbers
(:class:`LoopCounter`, :class:`LoopHistogram`) folded into Prometheus families only when
``/metrics`` is scraped: prometheus-client's own ``Counter`` and ``Histogram`` take a lock on
every update, which cost about 7% of a ping round trip. The gateway updates them only from its
event loop's thread (everything it runs is on that loop), which is what makes an unlocked
``+=`` safe; scrapes run on the same loop. The gauges (set at scrape time) and the counters of
rare events (Redis failures, bus and bridge faults) stay prometheus-client's.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

REGISTRY = CollectorRegistry(auto_describe=True)


class _Count:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class _Distribution:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # bucket "le": value <= bound
        self.sum += value


class _Family:
    """Children by label values, created on first use (values are stringified, as
    prometheus-client does, so ``labels(404)`` and ``labels("404")`` are one series)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self._lookup: dict[tuple[Any, ...], Any] = {}
        self._series: dict[tuple[str, ...], Any] = {}
        if not labelnames:
            self._series[()] = self._lookup[()] = self._new()
        registry.register(self)

    def _new(self) -> Any:
        raise NotImplementedError

    def labels(self, *values: Any) -> Any:
        child = self._lookup.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values!r}")
            child = self._series.setdefault(tuple(str(v) for v in values), self._new())
            self._lookup[values] = child
        return child

    def describe(self) -> list[Metric]:
        return [self._family()]

    def _family(self) -> Metric:
        raise NotImplementedError


class LoopCounter(_Family):
    """A counter (family) without locks: see the module docstring. ``name`` without ``_total``."""

    def _new(self) -> _Count:
        return _Count()

    def inc(self, amount: float = 1.0) -> None:
        """For a counter without labels."""
        self._series[()].inc(amount)

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for values, child in list(self._series.items()):
            family.add_metric(list(values), child.value)
        yield family


class LoopHistogram(_Family):
    """A histogram (family) without locks: see the module docstring."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self.bounds = tuple(sorted(float(b) for b in buckets))
        super().__init__(name, documentation, labelnames, registry)

    def _new(self) -> _Distribution:
        return _Distribution(self.bounds)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for values, child in list(self._series.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*map(floatToGoString, self.bounds), "+Inf"), child.counts, strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            family.add_metric(list(values), buckets, child.sum)
        yield family


CONNECTIONS = Gauge("gateway_connections", "Open client connections on this node", ["transport"], registry=REGISTRY)
MESSAGES_RECEIVED = LoopCounter(
    "gateway_messages_received", "Client messages received, by type", ["type"], registry=REGISTRY
)
MESSAGES_SENT = LoopCounter(
    "gateway_messages_sent", "Envelopes emitted by this node, by type", ["type"], registry=REGISTRY
)
ERRORS = LoopCounter("gateway_errors", "Errors answered to clients, by code", ["code"], registry=REGISTRY)
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
EVENT_LATENCY = LoopHistogram(
    "gateway_event_handling_seconds",
    "Time to handle one client event",
    ["type"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
    registry=REGISTRY,
)


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
