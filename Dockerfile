# syntax=docker/dockerfile:1
# One image for every zapvet process; the command picks it:
#   docker run IMAGE                       → bridge on :8080 (the default CMD)
#   docker run IMAGE worker --processes 1  → Dramatiq worker
#   docker run IMAGE scheduler             → reminders, summaries, sweeper
#   docker run IMAGE db upgrade            → migrations (they ship inside the wheel)
# Both stages must use the same Python: the venv's interpreter is a symlink into the base image.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
WORKDIR /src

# Dependencies first, from pyproject.toml alone, so a source change does not reinstall them.
COPY pyproject.toml README.md ./
RUN --mount=type=cache,target=/root/.cache/pip \
    mkdir -p src/zapvet && touch src/zapvet/__init__.py \
    && /opt/venv/bin/pip install . \
    && /opt/venv/bin/pip uninstall -y zapvet \
    && rm -rf src build

COPY src ./src
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install /wheels/zapvet-*.whl \
    && /opt/venv/bin/pip check \
    && cd / && /opt/venv/bin/python -c "from zapvet import db; print('migrations', db.head_revision())"

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 zapvet \
    && useradd --system --uid 10001 --gid zapvet --home-dir /app \
        --shell /usr/sbin/nologin zapvet \
    && install -d -o zapvet -g zapvet /app
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ZAPVET_LOG_FORMAT=json \
    ZAPVET_DATA_DIR=/app/.zapvet
WORKDIR /app
# Numeric, so an orchestrator's runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080
# Dramatiq and uvicorn finish work in flight on SIGTERM; give the worker's container a stop
# grace period longer than its --shutdown-timeout (docker-compose.yml: 180 s over 150 s).
STOPSIGNAL SIGTERM
# Checks the bridge (the default command); compose disables it for worker and scheduler.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["zapvet"]
CMD ["bridge", "--host", "0.0.0.0", "--port", "8080"]
