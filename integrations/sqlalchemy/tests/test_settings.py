"""Pure parts: default pool names, export settings from the environment, the resource."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import make_url

from poolwatch_sqlalchemy.config import (
    DEFAULT_GRPC_ENDPOINT,
    DEFAULT_HTTP_ENDPOINT,
    ExportSettings,
    Protocol,
    switched_on,
)
from poolwatch_sqlalchemy.pool_name import default_pool_name
from poolwatch_sqlalchemy.semconv import DEFAULT_SECONDS_BUCKETS
from poolwatch_sqlalchemy.telemetry import build_resource


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("postgresql+psycopg://mdm:mdm-pw-9a27@127.0.0.1:55432/mdm_demo", "127.0.0.1:55432/mdm_demo"),
        ("postgresql://mdm:secret@db.internal/datasets", "db.internal/datasets"),
        ("postgresql://mdm@/datasets?host=/run/postgresql", "/run/postgresql/datasets"),
        ("mysql+pymysql://u:p@h:3306", "h:3306"),
        ("sqlite:////var/lib/mdm/iris.sqlite", "/var/lib/mdm/iris.sqlite"),
        ("sqlite://", "sqlite::memory:"),
        ("sqlite:///:memory:", "sqlite::memory:"),
        ("duckdb:////data/iris.duckdb", "/data/iris.duckdb"),
    ],
)
def test_default_pool_name(url: str, name: str) -> None:
    assert default_pool_name(make_url(url)) == name


def test_default_pool_name_never_holds_credentials() -> None:
    name = default_pool_name(make_url("postgresql://alice:hunter2@10.0.0.5:5432/sales"))
    assert "hunter2" not in name and "alice" not in name


def test_relative_sqlite_paths_are_made_absolute() -> None:
    assert default_pool_name(make_url("sqlite:///data/x.sqlite")) == os.path.abspath("data/x.sqlite")


def test_settings_default_to_the_agents_listener() -> None:
    settings = ExportSettings.from_env({})
    assert settings == ExportSettings(
        protocol=Protocol.HTTP_PROTOBUF,
        endpoint=DEFAULT_HTTP_ENDPOINT,
        export_interval_ms=10_000,
        bucket_boundaries=DEFAULT_SECONDS_BUCKETS,
        exit_timeout_s=2.0,
    )
    assert DEFAULT_HTTP_ENDPOINT == "http://127.0.0.1:9898/v1/metrics"


@pytest.mark.parametrize(
    ("env", "protocol", "endpoint"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://agent:9898"}, Protocol.HTTP_PROTOBUF, "http://agent:9898/v1/metrics"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://agent:9898/"}, Protocol.HTTP_PROTOBUF, "http://agent:9898/v1/metrics"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://b:2/in"},
            Protocol.HTTP_PROTOBUF,
            "http://b:2/in",
        ),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, Protocol.GRPC, DEFAULT_GRPC_ENDPOINT),
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc",
             "OTEL_EXPORTER_OTLP_ENDPOINT": "http://agent:4317"},
            Protocol.GRPC,
            "http://agent:4317",
        ),
    ],
)
def test_settings_follow_the_sdk_variables(env: dict[str, str], protocol: Protocol, endpoint: str) -> None:
    settings = ExportSettings.from_env(env)
    assert (settings.protocol, settings.endpoint, settings.problems) == (protocol, endpoint, ())


def test_bad_values_fall_back_and_say_why() -> None:
    settings = ExportSettings.from_env(
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
            "OTEL_METRIC_EXPORT_INTERVAL": "soon",
            "POOLWATCH_SQLALCHEMY_BUCKETS": "0.1,0.05",
            "POOLWATCH_SQLALCHEMY_EXIT_TIMEOUT": "-1",
        }
    )
    assert settings.protocol is Protocol.HTTP_PROTOBUF
    assert settings.export_interval_ms == 10_000
    assert settings.bucket_boundaries == DEFAULT_SECONDS_BUCKETS
    assert settings.exit_timeout_s == 2.0
    assert settings.problems == (
        "OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' is not supported, using http/protobuf (supported: grpc, http/protobuf)",
        "OTEL_METRIC_EXPORT_INTERVAL: 'soon' is not a number, using 10000",
        "POOLWATCH_SQLALCHEMY_BUCKETS: '0.1,0.05' must be finite and strictly increasing, using the default",
        "POOLWATCH_SQLALCHEMY_EXIT_TIMEOUT: '-1' must be a positive number, using 2",
    )


def test_buckets_and_exponential_histograms() -> None:
    assert ExportSettings.from_env({"POOLWATCH_SQLALCHEMY_BUCKETS": "0.01, 0.1,1"}).bucket_boundaries == (0.01, 0.1, 1.0)
    exponential = {"OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": "base2_exponential_bucket_histogram"}
    assert ExportSettings.from_env(exponential).bucket_boundaries is None


@pytest.mark.parametrize(("value", "on"), [("1", True), ("true", True), (" ON ", True), ("0", False), ("", False)])
def test_switch(value: str, on: bool) -> None:
    assert switched_on({"POOLWATCH_SQLALCHEMY": value}) is on


def test_resource_defaults_sit_under_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    resource = build_resource({})
    assert str(resource.attributes["service.name"]).startswith("unknown_service:")
    # A UUID for this process (recent SDKs make one per process themselves; a fork gets its
    # own, see test_subprocesses).
    uuid.UUID(str(resource.attributes["service.instance.id"]))
    assert resource.attributes["telemetry.sdk.name"] == "opentelemetry"

    attributes = "service.name=mdm,service.instance.id=worker-1,deployment.environment=dev"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", attributes)
    resource = build_resource({"OTEL_RESOURCE_ATTRIBUTES": attributes})
    assert resource.attributes["service.name"] == "mdm"
    assert resource.attributes["service.instance.id"] == "worker-1"

    monkeypatch.setenv("OTEL_SERVICE_NAME", "mdm-cli")
    assert build_resource({"OTEL_SERVICE_NAME": "mdm-cli"}).attributes["service.name"] == "mdm-cli"
