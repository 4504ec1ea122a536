"""Where traces go: the standard ``OTEL_*`` variables, read once when the server starts.

The names and their precedence are the OpenTelemetry exporter specification's: the traces
endpoint is used as given, the generic endpoint gets ``/v1/traces`` appended; the traces
headers replace the generic ones. No endpoint (or ``OTEL_SDK_DISABLED=true``) means no export.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from opentelemetry.util.re import parse_env_headers

__all__ = ["OtlpTarget", "otlp_target"]


@dataclass(frozen=True)
class OtlpTarget:
    """One OTLP/HTTP (protobuf) traces endpoint and what every request to it carries."""

    endpoint: str
    headers: Mapping[str, str] = field(default_factory=dict)
    service_name: str = "runtrack"
    gzip: bool = False
    timeout: float = 10.0


def otlp_target(environ: Mapping[str, str]) -> OtlpTarget | None:
    """The target the variables describe, None when export is off; ValueError for a bad URL."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    endpoint = _endpoint(environ)
    if endpoint is None:
        return None
    return OtlpTarget(
        endpoint=endpoint,
        headers=parse_env_headers(_either(environ, "HEADERS"), liberal=True),
        service_name=environ.get("OTEL_SERVICE_NAME", "").strip() or "runtrack",
        gzip=_either(environ, "COMPRESSION").strip().lower() == "gzip",
    )


def _endpoint(environ: Mapping[str, str]) -> str | None:
    traces = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if not traces and not base:
        return None
    endpoint = traces or f"{base.removesuffix('/')}/v1/traces"
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        variable = "TRACES_ENDPOINT" if traces else "ENDPOINT"
        raise ValueError(f"OTEL_EXPORTER_OTLP_{variable} must be an http(s) URL; got {endpoint!r}")
    return endpoint


def _either(environ: Mapping[str, str], name: str) -> str:
    """The traces variable ``name`` if set, else the generic one."""
    return environ.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or environ.get(
        f"OTEL_EXPORTER_OTLP_{name}", ""
    )
