# syntax=docker/dockerfile:1
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=3000

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY bot ./bot
# The versions CI tested (constraints.txt), not whatever was released this morning.
RUN pip install --constraint=constraints.txt . \
    && useradd --create-home --uid 10001 bot \
    && mkdir -p /data && chown bot /data

USER 10001:10001
# The default SQLite file (cancel-training.db in the working directory) lives on this volume,
# so it outlives the container; production sets DATABASE_URL to PostgreSQL instead.
WORKDIR /data
VOLUME ["/data"]
EXPOSE 3000
# An empty PORT (`docker run --env-file .env` with `PORT=`) means unset, as it does for the bot.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % (os.environ.get('PORT', '').strip() or '3000'), timeout=2)"]
CMD ["python", "-m", "bot", "serve"]
