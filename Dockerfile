# Beacon's processes (API layer, workers, gateways, operations commands) in one image.
# The command chooses the process: `beacon api`, `beacon worker`, `beacon gateway whatsapp`, ...
# Kafka and the schema registry come from their own images (see docker-compose.kafka.yml).
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BEACON_DATA_DIR=/var/lib/beacon \
    BEACON_API_HOST=0.0.0.0 \
    BEACON_GATEWAY_HOST=0.0.0.0 \
    BEACON_WORKER_WEB_HOST=0.0.0.0 \
    BEACON_FAKE_WHATSAPP_HOST=0.0.0.0

WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p beacon && touch beacon/__init__.py \
    && pip install . \
    && pip uninstall -y beacon

# The code. An editable install keeps beacon/ beside schemas/ (the codec reads schemas/ from the tree).
COPY beacon ./beacon
COPY schemas ./schemas
RUN pip install --no-deps -e . \
    && useradd --system --uid 10001 --home-dir /var/lib/beacon --create-home beacon

USER beacon
EXPOSE 8000 8080 6066 8090
ENTRYPOINT ["beacon"]
CMD ["--help"]
