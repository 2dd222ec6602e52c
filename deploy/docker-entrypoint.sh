#!/bin/sh
# Container entry point: a clean multi-process metrics directory, then the given command.
set -eu
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
  rm -rf "${PROMETHEUS_MULTIPROC_DIR:?}"
  mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
fi
exec "$@"
