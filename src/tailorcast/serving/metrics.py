"""Prometheus metrics of one server process (``GET /metrics``).

Every app gets its own registry, so several apps in one process (tests) do not share
counters. Labels are route *templates* (``/v1/customers/{customer_id}/recommendations``),
never concrete paths: a label per customer would both leak IDs and grow without bound.
With ``--workers N`` each worker reports its own figures (scrape them behind the balancer,
or run one worker per port).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE", "ServerMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Buckets around the latency targets (a few ms per recommendation, 25 ms p99).
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


# ``*_created`` timestamps double the output and say nothing a scraper needs.
disable_created_metrics()  # type: ignore[no-untyped-call]


class ServerMetrics:
    """Counters, histograms and gauges the middleware and routes update."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "tailorcast_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tailorcast_http_request_duration_seconds",
            "Time to answer a request, by method and route template.",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.events = Counter(
            "tailorcast_events_ingested",
            "Events accepted through POST /v1/events.",
            registry=self.registry,
        )
        self.duplicates = Counter(
            "tailorcast_events_duplicate",
            "Events ignored as duplicates (an event_id seen before).",
            registry=self.registry,
        )
        self.rejects = Counter(
            "tailorcast_events_rejected",
            "Events refused by validation, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "tailorcast_rate_limited",
            "Requests refused with 429 by the per-key rate limit.",
            registry=self.registry,
        )
        self.model = Gauge(
            "tailorcast_model_info",
            "The model being served (value 1; version and name in labels).",
            ["version", "model"],
            registry=self.registry,
        )
        self.ready = Gauge(
            "tailorcast_model_ready", "1 when a model is loaded.", registry=self.registry
        )
        self._model_labels: tuple[str, str] | None = None
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        # The labelled children, looked up once per (method, route, status): ``labels()``
        # takes a lock and builds a key on every call, which adds up at thousands a second.
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def record_events(self, report: Mapping[str, Any]) -> None:
        self.events.inc(int(report.get("accepted", 0)))
        self.duplicates.inc(int(report.get("duplicates", 0)))
        for reason, count in dict(report.get("rejected_by_reason") or {}).items():
            self.rejects.labels(_reason_label(str(reason))).inc(int(count))

    def set_model(self, ready: bool, info: Mapping[str, Any]) -> None:
        self.ready.set(1 if ready else 0)
        labels = (str(info.get("version") or ""), str(info.get("model") or ""))
        if labels != self._model_labels:
            if self._model_labels is not None:
                self.model.remove(*self._model_labels)
            if ready:
                self.model.labels(*labels).set(1)
                self._model_labels = labels
            else:
                self._model_labels = None

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _reason_label(reason: str) -> str:
    # Reasons are the ingest validator's fixed phrases; anything past the first ':' (a value
    # from the request) is cut so no client data ends up in a label.
    return reason.split(":", 1)[0][:80]
