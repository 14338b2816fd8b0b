#!/usr/bin/env python3
"""Writes the Grafana dashboards in dashboards/ (fleet overview, pool detail, agent self-health).

The JSON files are committed; this is how they are made, so that every panel has the same
datasource variable, filters, units and layout. The recommendations column of the alert tables
is read from the rule files in rules/. Run it after changing either:

    python3 scripts/dashboards.py            # writes dashboards/*.json
    python3 scripts/dashboards.py --check    # exit 1 if they differ from what it would write

It needs PyYAML (Debian's python3-yaml, or the project's Python from scripts/python-env.sh).
tests/dashboards.rs checks the result: every query returns data on a real Prometheus scraping a
loaded agent, every metric name is one the agent exports, the JSON follows Grafana's schema.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "dashboards"

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
POOL = "db_client_connection_pool_name"
# What every pool query is filtered by. dataset and backend match pools without the label too
# while they are at All (their allValue is .*), so in-app and PgBouncer pools stay in view.
POOL_FILTER = (
    'instance=~"$instance", target=~"$target", backend=~"$backend", '
    f'dataset=~"$dataset", {POOL}=~"$pool"'
)
TARGET_FILTER = 'instance=~"$instance", target=~"$target"'
# What tells one pool from another: two processes reporting one pool name over OTLP are two
# pools (service_name and service_instance_id are empty for the other sources).
POOL_KEY = f"instance, target, service_name, service_instance_id, {POOL}"
POOL_LEGEND = "{{target}} {{" + POOL + "}}"
DETAIL_UID = "poolwatch-pool-detail"
OVERVIEW_UID = "poolwatch-overview"
AGENT_UID = "poolwatch-agent"

GREEN, ORANGE, RED, BLUE = "green", "orange", "red", "blue"


def thresholds(*steps: tuple[str, float | None]) -> dict[str, Any]:
    return {
        "mode": "absolute",
        "steps": [{"color": c, "value": v} for c, v in steps],
    }


def query(
    expr: str,
    legend: str = "",
    ref: str = "A",
    table: bool = False,
) -> dict[str, Any]:
    """One Prometheus query: a range query for graphs, an instant one as a table."""
    return {
        "datasource": DATASOURCE,
        "refId": ref,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not table,
        "instant": table,
        "format": "table" if table else "time_series",
        "editorMode": "code",
    }


class Layout:
    """Places panels left to right, row by row, on Grafana's 24-column grid."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.x = 0
        self.y = 0
        self.row_height = 0
        self.next_id = 1

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            {
                "type": "row",
                "title": title,
                "collapsed": False,
                "id": self._id(),
                "panels": [],
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
            }
        )
        self.y += 1

    def add(self, panel: dict[str, Any], w: int = 12, h: int = 8) -> None:
        if self.x + w > 24:
            self._newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)

    def _newline(self) -> None:
        self.y += self.row_height
        self.x = 0
        self.row_height = 0

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def panel(
    kind: str,
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    unit: str = "short",
    steps: dict[str, Any] | None = None,
    custom: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    mappings: list[dict[str, Any]] | None = None,
    transformations: list[dict[str, Any]] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    color: dict[str, Any] | None = None,
) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": unit,
        "thresholds": steps or thresholds((GREEN, None)),
        "mappings": mappings or [],
        "color": color or {"mode": "palette-classic"},
        "custom": custom or {},
    }
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    out: dict[str, Any] = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
    }
    if transformations:
        out["transformations"] = transformations
    return out


def timeseries(
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    unit: str = "short",
    steps: dict[str, Any] | None = None,
    threshold_style: str = "off",
    stacked: bool = False,
    overrides: list[dict[str, Any]] | None = None,
    minimum: float | None = 0,
    maximum: float | None = None,
) -> dict[str, Any]:
    custom = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 20 if stacked else 5,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stacked else "none", "group": "A"},
        "thresholdsStyle": {"mode": threshold_style},
    }
    options = {
        "legend": {
            "displayMode": "table",
            "placement": "bottom",
            "showLegend": True,
            "calcs": ["lastNotNull", "max"],
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return panel(
        "timeseries",
        title,
        description,
        targets,
        unit=unit,
        steps=steps,
        custom=custom,
        options=options,
        overrides=overrides,
        minimum=minimum,
        maximum=maximum,
    )


# Stats, tables and state timelines colour by their thresholds.
BY_THRESHOLDS = {"mode": "thresholds"}


def stat(
    title: str, description: str, targets: list[dict[str, Any]], **fields: Any
) -> dict[str, Any]:
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "background",
        "graphMode": "area",
        "justifyMode": "auto",
        "orientation": "auto",
        "textMode": "auto",
    }
    return panel("stat", title, description, targets, options=options, color=BY_THRESHOLDS, **fields)


def table(
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    transformations: list[dict[str, Any]],
    sort_by: str,
    overrides: list[dict[str, Any]] | None = None,
    colored: str | None = None,
    descending: bool = True,
    **fields: Any,
) -> dict[str, Any]:
    """A table sorted by `sort_by`; the `colored` column takes its thresholds'
    colour as background."""
    custom = {"align": "auto", "filterable": True, "cellOptions": {"type": "auto"}}
    overrides = list(overrides or [])
    if colored:
        background = {"id": "custom.cellOptions", "value": {"type": "color-background"}}
        overrides.append(override(colored, [background]))
    options = {
        "showHeader": True,
        "cellHeight": "sm",
        "sortBy": [{"displayName": sort_by, "desc": descending}],
    }
    return panel(
        "table",
        title,
        description,
        targets,
        custom=custom,
        options=options,
        overrides=overrides,
        transformations=transformations,
        color=BY_THRESHOLDS,
        **fields,
    )


def state_timeline(
    title: str, description: str, targets: list[dict[str, Any]], **fields: Any
) -> dict[str, Any]:
    options = {
        "showValue": "never",
        "mergeValues": True,
        "rowHeight": 0.8,
        "alignValue": "left",
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "single", "sort": "none"},
    }
    custom = {"lineWidth": 0, "fillOpacity": 80}
    return panel(
        "state-timeline",
        title,
        description,
        targets,
        options=options,
        color=BY_THRESHOLDS,
        custom=custom,
        **fields,
    )


def value_map(values: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    return [
        {
            "type": "value",
            "options": {
                key: {"text": text, "color": color, "index": i}
                for i, (key, (text, color)) in enumerate(values.items())
            },
        }
    ]


def organize(exclude: list[str], rename: dict[str, str]) -> dict[str, Any]:
    return {
        "id": "organize",
        "options": {
            "excludeByName": {name: True for name in exclude},
            "renameByName": rename,
        },
    }


def override(field: str, properties: list[dict[str, Any]]) -> dict[str, Any]:
    return {"matcher": {"id": "byName", "options": field}, "properties": properties}


def by_query(ref: str, properties: list[dict[str, Any]]) -> dict[str, Any]:
    return {"matcher": {"id": "byFrameRefID", "options": ref}, "properties": properties}


# The pool column of the overview's tables opens the pool's detail, with its instance, target and
# pool preselected and the time range and datasource kept.
DETAIL_LINK = {
    "title": "Open the pool's detail",
    "url": (
        f"/d/{DETAIL_UID}/poolwatch-pool-detail?${{datasource:queryparam}}"
        "&var-instance=${__data.fields.instance}&var-target=${__data.fields.target}"
        "&var-backend=$__all&var-dataset=$__all&var-pool=${__value.raw}&${__url_time_range}"
    ),
}
POOL_COLUMN = override("pool", [{"id": "links", "value": [DETAIL_LINK]}])


def variables(with_pools: bool) -> list[dict[str, Any]]:
    """The datasource, then instance and target, then backend, dataset and pool, each narrowing
    the next. instance, target and pool at All send every value they list; backend and dataset
    send .*, which also matches pools without the label."""

    def variable(name: str, label: str, source: str, any_value: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "query",
            "name": name,
            "label": label,
            "datasource": DATASOURCE,
            "query": source,
            "refresh": 2,
            "sort": 1,
            "multi": True,
            "includeAll": True,
            "current": {"text": ["All"], "value": ["$__all"]},
            "hide": 0,
            "regex": "",
        }
        if any_value:
            out["allValue"] = ".*"
        return out

    pools = f'poolwatch_pool_observed_seconds{{{TARGET_FILTER}}}'
    listed = [
        {
            "type": "datasource",
            "name": "datasource",
            "label": "Data source",
            "query": "prometheus",
            "refresh": 1,
            "regex": "",
            "hide": 0,
            "includeAll": False,
            "multi": False,
        },
        variable("instance", "Agent", "label_values(poolwatch_build_info, instance)", False),
        variable(
            "target",
            "Target",
            'label_values(poolwatch_target_up{instance=~"$instance"}, target)',
            False,
        ),
    ]
    if with_pools:
        backend_pools = pools.replace("}", ', backend=~"$backend"}')
        dataset_pools = backend_pools.replace("}", ', dataset=~"$dataset"}')
        listed += [
            variable("backend", "Backend", f"label_values({pools}, backend)", True),
            variable("dataset", "Dataset", f"label_values({backend_pools}, dataset)", True),
            variable("pool", "Pool", f"label_values({dataset_pools}, {POOL})", False),
        ]
    return listed


def dashboard(uid: str, title: str, description: str, layout: Layout, pools: bool) -> dict:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["poolwatch"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "title": "poolwatch",
                "type": "dashboards",
                "tags": ["poolwatch"],
                "asDropdown": False,
                "icon": "external link",
                "includeVars": True,
                "keepTime": True,
                "targetBlank": False,
                "tooltip": "The other poolwatch dashboards, with these variables",
            }
        ],
        "templating": {"list": variables(pools)},
        "panels": layout.panels,
    }


def recommendations() -> dict[str, str]:
    """Each alert's recommendation annotation, its templates (the alert's value, labels) shown as
    an ellipsis: the table beside it has the figures."""
    out: dict[str, str] = {}
    for path in sorted((ROOT / "rules").glob("*.yaml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                text = rule.get("annotations", {}).get("recommendation")
                if "alert" in rule and text:
                    out[rule["alert"]] = template_free(text)
    return dict(sorted(out.items()))


def template_free(text: str) -> str:
    return re.sub(r"\{\{[^}]*\}\}", "…", text)


def alert_table(title: str, description: str, alerts: str, pools: str) -> dict[str, Any]:
    """Firing alerts, each with its recommendation and its pool's recommended size."""
    recommendation_map = value_map({name: (text, "text") for name, text in recommendations().items()})
    return table(
        title,
        description,
        [
            query(
                f'label_replace(poolwatch_alerts{{alertstate="firing", {alerts}}}, '
                '"recommendation", "$1", "alertname", "(.*)")',
                ref="A",
                table=True,
            ),
            query(
                f"poolwatch_pool_recommended_size{{{pools}}}\n"
                f"  and on ({POOL_KEY})\n"
                f'poolwatch_alerts{{alertstate="firing", {alerts}}}',
                ref="B",
                table=True,
            ),
        ],
        [
            {"id": "merge", "options": {}},
            organize(
                ["Time", "__name__", "job", "alertstate", "Value #A"],
                {POOL: "pool", "Value #B": "recommended pool_size", "model": "recommended by"},
            ),
        ],
        # critical before warning before info
        sort_by="severity",
        descending=False,
        overrides=[
            override("recommendation", [{"id": "mappings", "value": recommendation_map}]),
            override(
                "severity",
                [
                    {
                        "id": "mappings",
                        "value": value_map(
                            {"critical": ("critical", RED), "warning": ("warning", ORANGE), "info": ("info", BLUE)}
                        ),
                    },
                    {"id": "custom.cellOptions", "value": {"type": "color-text"}},
                ],
            ),
            POOL_COLUMN,
        ],
    )


HEALTH = value_map({"0": ("healthy", GREEN), "1": ("degraded", ORANGE), "2": ("unhealthy", RED)})


def overview() -> dict:
    pools = POOL_FILTER
    lay = Layout()
    lay.row("Health")
    lay.add(
        table(
            "Pool health",
            "Every pool's status, worst first, as the agent's /api/v1/health computes it: unhealthy "
            "while a critical alert fires on the pool, degraded while a warning fires, else healthy. "
            "Look at the unhealthy and degraded pools first; the alert table below says why and what "
            "to change. Click a pool for its detail.",
            [
                query(
                    f"max by ({POOL_KEY}) (\n"
                    f'    2 * poolwatch_alerts{{alertstate="firing", severity="critical", {pools}}}\n'
                    f'  or 1 * poolwatch_alerts{{alertstate="firing", severity="warning", {pools}}}\n'
                    f"  or 0 * poolwatch_pool_observed_seconds{{{pools}}}\n)",
                    table=True,
                )
            ],
            [organize(["Time"], {POOL: "pool", "Value": "status"})],
            sort_by="status",
            colored="status",
            steps=thresholds((GREEN, None), (ORANGE, 1), (RED, 2)),
            mappings=HEALTH,
            overrides=[POOL_COLUMN],
        ),
        w=12,
        h=9,
    )
    lay.add(
        table(
            "Utilization, worst first",
            "Used connections / pool_size of every pool, highest first. Above 80% (orange) the "
            "spec's PoolUtilizationHigh fires after a minute; at 100% (red) callers queue. A pool "
            "that stays red needs a larger pool_size (its detail shows the recommended size) or "
            "shorter transactions.",
            [query(f"poolwatch_pool_utilization_ratio{{{pools}}}", table=True)],
            [organize(["Time", "__name__", "job"], {POOL: "pool", "Value": "utilization"})],
            sort_by="utilization",
            colored="utilization",
            unit="percentunit",
            steps=thresholds((GREEN, None), (ORANGE, 0.8), (RED, 1)),
            overrides=[POOL_COLUMN],
        ),
        w=12,
        h=9,
    )
    lay.add(
        timeseries(
            "Pending requests",
            "Callers waiting for a connection, per pool. Any sustained value above 0 means the pool "
            "is exhausted: every connection it may open is in use. PgBouncer counts waiting clients "
            "(cl_waiting), in-app pools their queued callers; a PostgreSQL source cannot see them.",
            [
                query(
                    f"sum by ({POOL_KEY}) (db_client_connection_pending_requests{{{pools}}})",
                    POOL_LEGEND,
                )
            ],
            steps=thresholds((GREEN, None), (ORANGE, 1)),
            threshold_style="line",
        ),
        w=12,
        h=8,
    )
    lay.add(
        alert_table(
            "Firing alerts and what to do",
            "Every firing alert of the agent's rules with its recommendation and, for pool alerts, "
            "the pool's recommended pool_size (the smallest that keeps used + pending at 80%). "
            "Critical alerts page on-call; warnings go to the team. The agent's /api/v1/alerts has "
            "the full annotations with their figures filled in.",
            TARGET_FILTER,
            pools,
        ),
        w=12,
        h=8,
    )
    lay.row("Targets and datasets")
    lay.add(
        stat(
            "Targets down",
            "Targets the agent failed to sample at its last attempt. Anything above 0 means the "
            "pools behind them are not watched: their figures are absent, not zero. The agent "
            "self-health dashboard says why (errors by kind).",
            [query(f"sum(1 - poolwatch_target_up{{{TARGET_FILTER}}})")],
            steps=thresholds((GREEN, None), (RED, 1)),
        ),
        w=4,
        h=7,
    )
    lay.add(
        state_timeline(
            "Targets up",
            "Each target's sampling over time: green while samples succeed, red while they fail. "
            "A red band that does not clear is TargetDown; short red flickers are samples that "
            "missed their deadline.",
            [query(f"poolwatch_target_up{{{TARGET_FILTER}}}", "{{instance}} {{target}}")],
            mappings=value_map({"1": ("up", GREEN), "0": ("down", RED)}),
            steps=thresholds((RED, None), (GREEN, 1)),
        ),
        w=8,
        h=7,
    )
    lay.add(
        table(
            "MDM datasets and their backends",
            "The datasets the agent watches (pools of databases named mdm_<dataset>, and MDM's own "
            "datasets) with their backend and how many pools each has on each target. A dataset "
            "missing here is not watched; one on an unexpected backend is misconfigured.",
            [
                query(
                    f"count by (dataset, backend, instance, target, source) "
                    f'(poolwatch_pool_observed_seconds{{{pools}, dataset!=""}})',
                    table=True,
                )
            ],
            [organize(["Time"], {"Value": "pools"})],
            sort_by="pools",
        ),
        w=12,
        h=7,
    )
    return dashboard(
        OVERVIEW_UID,
        "poolwatch / Pool fleet overview",
        "Every pool poolwatch watches: health, utilization, waiting callers, firing alerts with "
        "their recommendations, targets down, and the MDM datasets.",
        lay,
        True,
    )


def detail() -> dict:
    pools = POOL_FILTER
    lay = Layout()
    lay.row("Connections")
    lay.add(
        timeseries(
            "Used, idle and pending against pool_size",
            "Used, idle and pending stacked, against the pool_size line and the pool_size + "
            "max_overflow line. Used reaching pool_size means the pool overflows; used + pending "
            "above pool_size + max_overflow means callers queue. Idle far above zero for hours "
            "means the pool is larger than the load needs.",
            [
                query(
                    f'db_client_connection_count{{{pools}, db_client_connection_state="used"}}',
                    "used " + POOL_LEGEND,
                    "A",
                ),
                query(
                    f'db_client_connection_count{{{pools}, db_client_connection_state="idle"}}',
                    "idle " + POOL_LEGEND,
                    "B",
                ),
                query(
                    f"db_client_connection_pending_requests{{{pools}}}",
                    "pending " + POOL_LEGEND,
                    "C",
                ),
                query(f"poolwatch_pool_size{{{pools}}}", "pool_size " + POOL_LEGEND, "D"),
                query(
                    f"poolwatch_pool_size{{{pools}}} + poolwatch_pool_max_overflow{{{pools}}}",
                    "pool_size + max_overflow " + POOL_LEGEND,
                    "E",
                ),
            ],
            stacked=True,
            overrides=[
                by_query(
                    ref,
                    [
                        {"id": "custom.stacking", "value": {"mode": "none", "group": "A"}},
                        {"id": "custom.fillOpacity", "value": 0},
                        {"id": "custom.lineWidth", "value": 2},
                        {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                        {"id": "color", "value": {"mode": "fixed", "fixedColor": color}},
                    ],
                )
                for ref, color in (("D", ORANGE), ("E", RED))
            ],
        ),
        w=16,
        h=9,
    )
    lay.add(
        timeseries(
            "Utilization",
            "Used / pool_size, with the spec's 0.8 threshold: above it for a minute fires "
            "PoolUtilizationHigh. Overflow utilization is the share of max_overflow in use; when "
            "it stays above 0 the pool lives on its overflow and pool_size is too small.",
            [
                query(f"poolwatch_pool_utilization_ratio{{{pools}}}", "utilization " + POOL_LEGEND, "A"),
                query(
                    f"poolwatch_pool_overflow_utilization_ratio{{{pools}}}",
                    "overflow " + POOL_LEGEND,
                    "B",
                ),
            ],
            unit="percentunit",
            steps=thresholds((GREEN, None), (ORANGE, 0.8), (RED, 1)),
            threshold_style="line+area",
        ),
        w=8,
        h=9,
    )
    lay.row("Waiting and holding")

    def quantiles(family: str) -> list[dict[str, Any]]:
        return [
            query(
                f"histogram_quantile({q}, sum by (le, {POOL_KEY}) "
                f"(rate({family}_bucket{{{pools}}}[$__rate_interval])))",
                f"p{int(q * 100)} " + POOL_LEGEND,
                ref,
            )
            for q, ref in ((0.5, "A"), (0.9, "B"), (0.99, "C"))
        ]

    lay.add(
        timeseries(
            "Wait time percentiles",
            "How long callers waited for a connection (p50, p90, p99), from the histograms in-app "
            "pools report. A p99 above 1 s means some requests spend their latency budget queueing "
            "for the pool: raise pool_size or hold connections shorter.",
            quantiles("db_client_connection_wait_time_seconds"),
            unit="s",
            steps=thresholds((GREEN, None), (ORANGE, 0.1), (RED, 1)),
            threshold_style="line",
        ),
        w=8,
    )
    lay.add(
        timeseries(
            "Use time percentiles",
            "How long connections were held per checkout (p50, p90, p99), from the in-app "
            "histograms. A p99 climbing over hours with a steady load points to slow queries or "
            "work done while holding a connection (PoolUsageTimeClimbing).",
            quantiles("db_client_connection_use_time_seconds"),
            unit="s",
        ),
        w=8,
    )
    lay.add(
        timeseries(
            "Average wait and use time",
            "The average wait for a connection and time a connection is held, over the agent's rate "
            "window, for every source: from PgBouncer's totals and the in-app histograms' sums and "
            "counts. An average wait above 1 s fires PoolWaitTimeHigh. The oldest waiting caller "
            "above 5 s fires PoolSlowAcquisition.",
            [
                query(f"poolwatch_pool_avg_wait_time_seconds{{{pools}}}", "avg wait " + POOL_LEGEND, "A"),
                query(f"poolwatch_pool_avg_usage_time_seconds{{{pools}}}", "avg use " + POOL_LEGEND, "B"),
                query(
                    f"poolwatch_pool_oldest_wait_seconds{{{pools}}}",
                    "oldest waiting " + POOL_LEGEND,
                    "C",
                ),
            ],
            unit="s",
            steps=thresholds((GREEN, None), (RED, 1)),
            threshold_style="line",
        ),
        w=8,
    )
    lay.row("Churn, errors and timeouts")
    lay.add(
        timeseries(
            "Connection churn",
            "Connections opened plus closed per minute. A pool should reuse its connections: steady "
            "churn means they are closed on return (a pool_size below the load, overflow opening "
            "and closing, or a short recycle) and every request pays the connect cost.",
            [
                query(
                    f"poolwatch_pool_connection_churn_per_minute{{{pools}}}", "churn " + POOL_LEGEND, "A"
                ),
                query(
                    f"60 * rate(poolwatch_pool_connections_opened_total{{{pools}}}[$__rate_interval])",
                    "opened " + POOL_LEGEND,
                    "B",
                ),
                query(
                    f"60 * rate(poolwatch_pool_connections_closed_total{{{pools}}}[$__rate_interval])",
                    "closed " + POOL_LEGEND,
                    "C",
                ),
            ],
            unit="cpm",
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Connection errors and timeouts",
            "Failed connection attempts and callers that gave up waiting for a connection, per "
            "interval. Any timeout fires PoolAcquireTimeouts (critical): callers got errors. More "
            "than 10 connection errors in 5 minutes fires PoolConnectionErrors: look at the "
            "database, not the pool size.",
            [
                query(
                    f"increase(poolwatch_pool_connection_errors_total{{{pools}}}[$__rate_interval])",
                    "connection errors " + POOL_LEGEND,
                    "A",
                ),
                query(
                    f"increase(db_client_connection_timeouts_total{{{pools}}}[$__rate_interval])",
                    "timeouts " + POOL_LEGEND,
                    "B",
                ),
            ],
            steps=thresholds((GREEN, None), (RED, 1)),
            threshold_style="line",
        ),
        w=12,
    )
    lay.row("Connection lifetime")
    lay.add(
        timeseries(
            "Oldest connection age against recycle",
            "The age of the pool's oldest connection against its pool_recycle. Connections past "
            "1.5 × recycle for 5 minutes fire PoolConnectionsOlderThanRecycle: the application does "
            "not apply its recycle, and connections outlive server-side changes.",
            [
                query(
                    f"poolwatch_pool_oldest_connection_age_seconds{{{pools}}}",
                    "oldest " + POOL_LEGEND,
                    "A",
                ),
                query(f"poolwatch_pool_recycle_seconds{{{pools}}}", "recycle " + POOL_LEGEND, "B"),
            ],
            unit="s",
            overrides=[
                by_query(
                    "B",
                    [
                        {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                        {"id": "color", "value": {"mode": "fixed", "fixedColor": ORANGE}},
                    ],
                )
            ],
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Idle in transaction and lock waits",
            "How long the connection idle inside a transaction the longest has been so, and the "
            "connections waiting on a lock (PostgreSQL sources). Above 60 s fires "
            "PoolIdleInTransaction: a transaction left open holds a pool slot and its locks.",
            [
                query(
                    f"poolwatch_pool_oldest_idle_in_transaction_seconds{{{pools}}}",
                    "idle in transaction " + POOL_LEGEND,
                    "A",
                ),
                query(f"poolwatch_pool_lock_waits{{{pools}}}", "lock waits " + POOL_LEGEND, "B"),
            ],
            unit="s",
            steps=thresholds((GREEN, None), (RED, 60)),
            threshold_style="line",
            overrides=[by_query("B", [{"id": "unit", "value": "short"}])],
        ),
        w=12,
    )
    lay.row("Recommendation")
    lay.add(
        stat(
            "Recommended pool_size",
            "The pool_size to set, and the model that produced it (legend): erlang_c, the "
            "smallest whose predicted p99 wait meets the agent's target_p99_wait, from the "
            "checkout rate and hold time; utilization, the smallest that keeps used + pending "
            "at or below 80% of it (the larger of the two wins). Above the current pool_size "
            "(next panel) means the pool is too small for its load now.",
            [query(f"poolwatch_pool_recommended_size{{{pools}}}", POOL_LEGEND + " ({{model}})")],
            steps=thresholds((BLUE, None)),
        ),
        w=6,
    )
    lay.add(
        stat(
            "Current pool_size",
            "The pool_size the source reports (PgBouncer, in-app pools) or the configured one. "
            "Compare with the recommended size on its left.",
            [query(f"poolwatch_pool_size{{{pools}}}", POOL_LEGEND)],
            steps=thresholds((BLUE, None)),
        ),
        w=6,
    )
    lay.add(
        alert_table(
            "Current recommendation",
            "The firing alerts of these pools with what to change. Empty means nothing to change. "
            "The recommended pool_size column is the number to set.",
            f'{TARGET_FILTER}, {POOL}=~"$pool"',
            pools,
        ),
        w=12,
    )
    return dashboard(
        DETAIL_UID,
        "poolwatch / Pool detail",
        "One pool (or a few) in depth: connections against its limits, utilization, wait and use "
        "times, churn, errors, connection age and the current recommendation.",
        lay,
        True,
    )


def agent() -> dict:
    targets = TARGET_FILTER
    only_instance = 'instance=~"$instance"'
    lay = Layout()
    lay.row("Sampling")
    lay.add(
        timeseries(
            "Sample duration per target",
            "How long each target's samples took (p50 and p99). A p99 approaching the sample "
            "timeout means samples are about to miss their deadline and the target to be reported "
            "down; look at the target's load or network.",
            [
                query(
                    f"histogram_quantile({q}, sum by (le, instance, target) "
                    f"(rate(poolwatch_target_sample_duration_seconds_bucket{{{targets}}}[$__rate_interval])))",
                    f"p{int(q * 100)} {{{{instance}}}} {{{{target}}}}",
                    ref,
                )
                for q, ref in ((0.5, "A"), (0.99, "B"))
            ],
            unit="s",
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Sample errors per target",
            "Failed samples by kind: connect, auth, query, protocol, timeout, certificate, tls. "
            "auth and certificate errors need a credentials or certificate fix; timeouts mean the "
            "target is slow or hung.",
            [
                query(
                    f"sum by (instance, target, kind) (increase(poolwatch_target_errors_total{{{targets}}}[$__rate_interval]))",
                    "{{target}} {{kind}}",
                )
            ],
            steps=thresholds((GREEN, None), (RED, 1)),
            threshold_style="line",
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Time since the last successful sample",
            "Seconds since each target was last sampled successfully. It should stay near the "
            "sample interval; a rising line is a target down.",
            [
                query(
                    f"time() - poolwatch_target_last_success_timestamp_seconds{{{targets}}}",
                    "{{instance}} {{target}}",
                )
            ],
            unit="s",
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Rules",
            "Alerting rules loaded, rules whose last evaluation failed (should be 0: a failing rule "
            "cannot fire), and how long evaluating all of them took.",
            [
                query(f"poolwatch_rules_loaded{{{only_instance}}}", "loaded {{instance}}", "A"),
                query(f"poolwatch_rule_evaluation_failing{{{only_instance}}}", "failing {{instance}}", "B"),
                query(
                    f"poolwatch_rule_evaluation_duration_seconds{{{only_instance}}}",
                    "evaluation {{instance}}",
                    "C",
                ),
            ],
            overrides=[by_query("C", [{"id": "unit", "value": "s"}])],
        ),
        w=12,
    )
    lay.row("Reloads")
    lay.add(
        state_timeline(
            "Last reload succeeded",
            "Whether the last load of the config, rule and web config files succeeded. Red means a "
            "broken file is being ignored and the last good version still runs: fix the file (the "
            "agent's log names file, line and field).",
            [query(f"poolwatch_reload_successful{{{only_instance}}}", "{{instance}} {{kind}}")],
            mappings=value_map({"1": ("ok", GREEN), "0": ("broken file ignored", RED)}),
            steps=thresholds((RED, None), (GREEN, 1)),
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Time since the last successful load",
            "Seconds since each file kind was last loaded successfully; a step down is a reload.",
            [
                query(
                    f"time() - poolwatch_reload_last_success_timestamp_seconds{{{only_instance}}}",
                    "{{instance}} {{kind}}",
                )
            ],
            unit="s",
        ),
        w=12,
    )
    lay.row("Alertmanager delivery")
    lay.add(
        timeseries(
            "Alerts sent and failed requests",
            "Alerts delivered to each Alertmanager, and requests that failed (unreachable, timed "
            "out, not 2xx). Failures that do not stop mean on-call is not paged: check the "
            "Alertmanager and the network between.",
            [
                query(
                    f"sum by (instance, alertmanager) (rate(poolwatch_notifications_sent_total{{{only_instance}}}[$__rate_interval]))",
                    "sent {{alertmanager}}",
                    "A",
                ),
                query(
                    f"sum by (instance, alertmanager) (increase(poolwatch_notifications_errors_total{{{only_instance}}}[$__rate_interval]))",
                    "failed {{alertmanager}}",
                    "B",
                ),
                query(
                    f"sum by (instance, alertmanager) (increase(poolwatch_notifications_dropped_total{{{only_instance}}}[$__rate_interval]))",
                    "dropped {{alertmanager}}",
                    "C",
                ),
            ],
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Alert queue",
            "Alerts waiting for delivery per Alertmanager, against the queue's capacity. A queue "
            "that grows towards capacity drops its oldest alerts; the number of Alertmanagers the "
            "agent sends to should match the config.",
            [
                query(
                    f"poolwatch_notifications_queue_length{{{only_instance}}}",
                    "queued {{alertmanager}}",
                    "A",
                ),
                query(
                    f"poolwatch_notifications_queue_capacity{{{only_instance}}}",
                    "capacity {{instance}}",
                    "B",
                ),
                query(f"poolwatch_alertmanagers{{{only_instance}}}", "alertmanagers {{instance}}", "C"),
            ],
        ),
        w=12,
    )
    lay.row("OTLP")
    lay.add(
        timeseries(
            "OTLP export",
            "Pushes to the OpenTelemetry collector and the failed ones by reason (unreachable, "
            "timeout, rejected). A failed push is dropped, not retried: a lasting failure leaves "
            "the collector's copy of the figures stale.",
            [
                query(
                    f"sum by (instance) (rate(poolwatch_otlp_exports_total{{{only_instance}}}[$__rate_interval]))",
                    "exports {{instance}}",
                    "A",
                ),
                query(
                    f"sum by (instance, reason) (increase(poolwatch_otlp_export_failures_total{{{only_instance}}}[$__rate_interval]))",
                    "failed {{reason}}",
                    "B",
                ),
            ],
        ),
        w=8,
    )
    lay.add(
        timeseries(
            "Time since the last OTLP export",
            "Seconds since the collector last accepted a push; it should stay below the export "
            "interval.",
            [
                query(
                    f"time() - poolwatch_otlp_last_success_timestamp_seconds{{{only_instance}}}",
                    "{{instance}}",
                )
            ],
            unit="s",
        ),
        w=8,
    )
    lay.add(
        timeseries(
            "OTLP receiver",
            "Data points in-app pools pushed to the agent, by outcome, and the receiver's requests "
            "by transport and outcome. Refused points are lost figures: the agent's log and "
            "poolwatch_otlp_data_points_refused_total say why.",
            [
                query(
                    f"sum by (instance, outcome) (rate(poolwatch_otlp_data_points_received_total{{{only_instance}}}[$__rate_interval]))",
                    "points {{outcome}}",
                    "A",
                ),
                query(
                    f"sum by (instance, transport, outcome) (rate(poolwatch_otlp_requests_total{{{only_instance}}}[$__rate_interval]))",
                    "requests {{transport}} {{outcome}}",
                    "B",
                ),
            ],
            unit="reqps",
        ),
        w=8,
    )
    return dashboard(
        AGENT_UID,
        "poolwatch / Agent self-health",
        "Whether poolwatch itself works: samples per target, reloads, rules, Alertmanager delivery "
        "and OTLP export.",
        lay,
        False,
    )


def main() -> int:
    """Writes the dashboards; with --check, only says which committed ones differ (exit 1)."""
    check = sys.argv[1:] == ["--check"]
    stale = []
    for name, build in (("overview", overview), ("pool-detail", detail), ("agent", agent)):
        path = OUT / f"{name}.json"
        text = json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(f"dashboards/{name}.json")
        else:
            OUT.mkdir(exist_ok=True)
            path.write_text(text)
            print(f"wrote dashboards/{name}.json")
    if stale:
        print(f"not what scripts/dashboards.py writes: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
