"""The Grafana dashboard and the Prometheus config in docs/monitoring match what the collector
exposes and what docker-compose.yml runs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from beeorm_celery.metrics import metric_names

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "docs" / "monitoring" / "grafana-dashboard.json"
SPEC_METRICS = {
    "beeorm_async_pending",
    "beeorm_async_oldest_pending_seconds",
    "beeorm_async_dead_letters",
    "beeorm_async_applied_batches_total",
    "beeorm_async_log_losses_total",
}


def _expressions(panels: list[dict[str, Any]]) -> list[str]:
    found = []
    for panel in panels:
        found += [t["expr"] for t in panel.get("targets", [])]
        found += _expressions(panel.get("panels", []))
    return found


def test_the_dashboard_queries_only_metrics_the_collector_exposes_and_all_of_spec() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = _expressions(dashboard["panels"])
    used = {name for e in expressions for name in re.findall(r"\bbeeorm_[a-z_]+", e)}

    assert used, "no beeorm metric in the dashboard"
    assert used <= set(metric_names()), used - set(metric_names())
    assert used >= SPEC_METRICS


def test_the_exposed_names_include_every_metric_spec_names() -> None:
    assert set(metric_names()) >= SPEC_METRICS


def test_compose_prometheus_scrapes_the_compose_metrics_service() -> None:
    # no YAML parser among the dependencies: the lines are simple enough to read as text
    compose = (REPO / "docker-compose.yml").read_text()
    prometheus = (REPO / "docs" / "monitoring" / "prometheus.yml").read_text()
    metrics_service = compose[compose.index("\n  metrics:") : compose.index("\n  prometheus:")]
    [port] = re.findall(r'--port\n\s+- "(\d+)"', metrics_service)

    assert "./docs/monitoring/prometheus.yml:/etc/prometheus/prometheus.yml" in compose
    assert re.findall(r"targets: \[(.*)\]", prometheus) == [f'"metrics:{port}"']
