"""Span export over OTLP, configured the OpenTelemetry way.

``OPSCORE_OTEL_EXPORT=true`` sends every finished span to an OTLP endpoint through a batching
processor; the standard variables configure the exporter (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_EXPORTER_OTLP_HEADERS``,
``OTEL_EXPORTER_OTLP_PROTOCOL``: ``http/protobuf``, the default, or ``grpc``;
``OTEL_SERVICE_NAME`` overrides the ``opscore`` service name). The exporters are the install
extra ``opscore[otel]``: asked for without it, start-up stops with a message that says so,
rather than running without a word and exporting nothing.
"""

from __future__ import annotations

import os

from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from ..config import Settings
from ..errors import ConfigError

_PROTOCOLS = ("http/protobuf", "grpc")


def span_processors(settings: Settings) -> list[SpanProcessor]:
    """The processors that export spans, as configured (none unless export is on)."""
    if not settings.otel_export:
        return []
    return [BatchSpanProcessor(otlp_exporter())]


def otlp_exporter() -> SpanExporter:
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol not in _PROTOCOLS:
        raise ConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL '{protocol}' is not supported: use "
            + " or ".join(_PROTOCOLS)
        )
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )

            return GrpcExporter()
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        return HttpExporter()
    except ImportError as exc:
        raise ConfigError(
            f"OPSCORE_OTEL_EXPORT is on but the OTLP exporter ({protocol}) is not installed: "
            "pip install 'opscore[otel]'"
        ) from exc
