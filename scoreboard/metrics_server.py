"""``python -m scoreboard.metrics_server``: /metrics on ``METRICS_PORT`` (``METRICS_ADDR``, default loopback).

A separate module so the metrics are defined once (running ``scoreboard.metrics`` itself as
``__main__`` would register every metric twice).
"""

import os

import django

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scoreboard.settings")
    django.setup()
    from scoreboard.metrics import serve

    serve(int(os.environ.get("METRICS_PORT", "9090")), os.environ.get("METRICS_ADDR", "127.0.0.1"))
