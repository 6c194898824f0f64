# Ops-Core: slim image, non-root user, health check on /health.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OPSCORE_HOST=0.0.0.0 \
    OPSCORE_PORT=8000

WORKDIR /app
COPY requirements.txt ./
RUN pip install -r requirements.txt
COPY pyproject.toml README.md ./
COPY opscore ./opscore
# the opscore[otel] extra too: OTLP export is one setting away (OPSCORE_OTEL_EXPORT=true)
RUN pip install --no-deps . \
    && pip install "opentelemetry-exporter-otlp-proto-http>=1.27,<2" \
                   "opentelemetry-exporter-otlp-proto-grpc>=1.27,<2" \
    && useradd --create-home --uid 10001 opscore \
    && mkdir -p /data && chown opscore /data

USER opscore
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"OPSCORE_PORT\",\"8000\")}/health', timeout=2)" || exit 1

CMD ["opscore", "serve"]
