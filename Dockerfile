# paytriage: the bot as a container. Build: docker build -t paytriage .
# Runs `paytriage run` as a non-root user; only /var/lib/paytriage (the SQLite store) is
# written, so the container can run with a read-only root filesystem (see deploy/compose.yaml).

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY detectors ./detectors
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
# PAYTRIAGE_HTTP_HOST=0.0.0.0: inside a container the health probes and Slack's requests
# come from outside its network namespace, so the endpoint listens on every interface of the
# container (publish only what you need). Its bodies are redacted; the Slack endpoint
# refuses unsigned or oversized requests before reading them.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PAYTRIAGE_CONFIG=/etc/paytriage/paytriage.yaml \
    PAYTRIAGE_RUNBOOKS_DIR=/opt/paytriage/runbooks \
    PAYTRIAGE_TEMPLATES_DIR=/opt/paytriage/templates \
    PAYTRIAGE_DATA_DIR=/var/lib/paytriage \
    PAYTRIAGE_DB_URL=sqlite:////var/lib/paytriage/paytriage.db \
    PAYTRIAGE_HTTP_HOST=0.0.0.0 \
    MPLCONFIGDIR=/tmp/matplotlib
RUN groupadd --system --gid 10001 paytriage \
 && useradd --system --uid 10001 --gid paytriage --home-dir /var/lib/paytriage \
      --shell /usr/sbin/nologin paytriage \
 && mkdir -p /var/lib/paytriage /etc/paytriage /opt/paytriage \
 && chown paytriage:paytriage /var/lib/paytriage
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config/paytriage.yaml /etc/paytriage/paytriage.yaml
COPY runbooks /opt/paytriage/runbooks
COPY templates /opt/paytriage/templates
WORKDIR /var/lib/paytriage
USER 10001:10001
VOLUME ["/var/lib/paytriage"]
# 8080: /healthz and /readyz; 3000: Slack HTTP mode (Socket Mode needs no inbound port).
EXPOSE 8080 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["paytriage"]
CMD ["run"]
