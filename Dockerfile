# Scoreboard image: one image, several roles (api, realtime, worker, beat, migrate) chosen by command.
# Base pinned to an exact patch release; pin the digest too in your registry mirror
# (FROM python:3.11.11-slim-bookworm@sha256:...) for fully reproducible builds.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.txt /tmp/requirements.txt
# Every wheel in requirements.txt is pinned and ships binaries for linux/amd64 and arm64: no compiler.
RUN python -m venv /opt/venv && /opt/venv/bin/pip install -r /tmp/requirements.txt

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=scoreboard.settings \
    DJANGO_DEBUG=0 \
    LOG_FORMAT=json \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus
RUN groupadd --system --gid 10001 scoreboard \
 && useradd --system --uid 10001 --gid scoreboard --home-dir /app --shell /usr/sbin/nologin scoreboard
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=root:root . /app
# Static files are collected at build time and served by the app (whitenoise); the development
# secrets this needs exist only for this build step.
RUN DJANGO_DEBUG=1 python manage.py collectstatic --noinput -v 0 \
 && rm -f db.sqlite3
USER 10001:10001
EXPOSE 8000 8001 9090
ENTRYPOINT ["/app/deploy/docker-entrypoint.sh"]
# Default role: the REST API (gunicorn, sync workers). Compose/k8s override the command per role.
CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py", "--bind", "0.0.0.0:8000", "scoreboard.wsgi:application"]
