"""Where traces go, from the standard OTEL variables (the exporter specification's rules)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.server.telemetry import OtlpTarget, otlp_target


def test_no_endpoint_means_no_export() -> None:
    assert otlp_target({}) is None
    assert otlp_target({"OTEL_SERVICE_NAME": "x"}) is None
    disabled = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}
    assert otlp_target(disabled) is None


def test_the_generic_endpoint_gets_the_traces_path_the_traces_one_is_used_as_given() -> None:
    generic = otlp_target({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"})
    assert generic == OtlpTarget("http://c:4318/v1/traces")
    both = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://t:443/custom",
    }
    assert otlp_target(both) == OtlpTarget("https://t:443/custom")


def test_headers_service_name_and_compression() -> None:
    target = otlp_target(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
            "OTEL_EXPORTER_OTLP_HEADERS": "api-key=a%20b,x-team=ops",
            "OTEL_SERVICE_NAME": "agents",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        }
    )
    assert target == OtlpTarget(
        "http://c:4318/v1/traces", {"api-key": "a b", "x-team": "ops"}, "agents", gzip=True
    )
    traces_headers = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
        "OTEL_EXPORTER_OTLP_HEADERS": "a=1",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "b=2",
    }
    assert otlp_target(traces_headers) == OtlpTarget("http://c:4318/v1/traces", {"b": "2"})


@pytest.mark.parametrize("endpoint", ["c:4318", "ftp://c/x", "http://"])
def test_an_endpoint_that_is_no_http_url_is_refused_by_name(endpoint: str) -> None:
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT must be an http"):
        otlp_target({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint})


def test_runtrack_serve_refuses_a_bad_endpoint_naming_the_variable(tmp_path: Path) -> None:
    environment = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}
    command = [sys.executable, "-m", "api", "serve", "--database", str(tmp_path / "x.db")]
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "OTEL_EXPORTER_OTLP_ENDPOINT must be an http(s) URL" in " ".join(result.stderr.split())
