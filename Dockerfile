# One image for the shop's worker, Flower and the demo (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

WORKDIR /app

# The library and its dependencies first, so editing the example app does not reinstall them.
# Every dependency installs from a wheel: no compiler. Flower is a dev extra, so it is named here.
# README.md is the package's long description (pyproject's `readme`).
COPY pyproject.toml README.md ./
COPY beeorm_celery ./beeorm_celery
RUN pip install . "flower>=2.0"

# The example app: entities (shop), the Celery app (worker), its settings, and the demo.
# They are imported from /app (PYTHONPATH), as from the repository root on a host.
COPY shop ./shop
COPY worker ./worker
COPY celeryconfig.py ./
COPY demo ./demo

# Celery warns against running as root; nothing here needs it.
RUN useradd --create-home --uid 10001 app
USER app

CMD ["celery", "-A", "worker", "worker", "-Q", "beeorm.catalog,beeorm.orders,beeorm.default", "-E", "--loglevel", "INFO"]
