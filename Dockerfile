# One image for every Python service of compose.yaml (admin, catalog, relay, worker, Flower).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . /app
RUN pip install -c requirements.lock -e . \
 && ADMIN_SECRET_KEY=build-only CATALOG_SECRET_KEY=build-only \
    python admin_project/manage.py collectstatic --no-input -v 0 \
 && ADMIN_SECRET_KEY=build-only CATALOG_SECRET_KEY=build-only \
    python catalog_project/manage.py collectstatic --no-input -v 0 \
 && useradd --create-home --uid 10001 app \
 && chown -R app /app/var

USER app
