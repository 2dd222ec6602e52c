# Scoreboard image: one image, several roles (api, realtime, worker, beat, migrate) chosen by command.
# Base pinned to an exact patch release; pin the digest too in your registry mirror
# (FROM python:3.11.11-slim-bookworm@sha256:...) for fully reproducible builds. Any base with
# python3 (3.11+) and its venv module works: `make image-test` builds one from Debian's packages
# (debootstrap) where no image registry is reachable, and passes it as BASE_IMAGE.
ARG BASE_IMAGE=python:3.11.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.txt /tmp/requirements.txt
# PIP_CERT: a CA bundle for a build behind a TLS-inspecting proxy, mounted at build time only
# (make image-test passes the host's); empty, pip trusts its own bundle. Nothing of it is kept.
ARG PIP_CERT=""
# Every wheel in requirements.txt is pinned and ships binaries for linux/amd64 and arm64: no compiler.
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install ${PIP_CERT:+--cert "$PIP_CERT"} -r /tmp/requirements.txt

FROM ${BASE_IMAGE}
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
# secrets this needs exist only for this build step; the metrics files it wrote as root go too (the
# entry point, running as the app user, recreates the directory).
RUN DJANGO_DEBUG=1 python manage.py collectstatic --noinput -v 0 \
 && rm -rf db.sqlite3 "$PROMETHEUS_MULTIPROC_DIR"
USER 10001:10001
EXPOSE 8000 8001 9090
# Liveness of the process serving PORT (8000 by default: the api role). `podman build --format docker`
# keeps it (the OCI format has no health check); compose and k8s define their own per role.
ENV PORT=8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]
ENTRYPOINT ["/app/deploy/docker-entrypoint.sh"]
# Default role: the REST API (gunicorn, sync workers). Compose/k8s override the command per role.
CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py", "--bind", "0.0.0.0:8000", "scoreboard.wsgi:application"]
