"""What Django's middleware cost a lean-path request, in one process, alternating.

    DATABASE_URL=... REDIS_URL=... python -m bench.lean_middleware [--requests 3000] [--rounds 5]

Three WSGI handlers around the same trivial JSON view at ``/v1/leaderboard``: Django's security,
session, common, CSRF, auth, messages and clickjacking middleware (what every path had), the same
list with ``scoreboard.lean``'s pass-through subclasses (what the lean paths have now), and no
middleware at all (the floor). Rounds alternate so the box's load hits all three alike; each is
measured without and with a browser's cookies (a session id and a CSRF cookie). Prints the median
CPU per request. A measuring tool, not a test.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from typing import Any

from bench import profile_update  # noqa: F401  (sets the same environment defaults on import)

DJANGO_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
LEAN_SUBCLASSES = {
    "django.contrib.sessions.middleware.SessionMiddleware": "scoreboard.lean.LeanSessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware": "scoreboard.lean.LeanAuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware": "scoreboard.lean.LeanMessageMiddleware",
}


def view(request: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse(b'{"success": true}', content_type="application/json")


urlpatterns: list[Any] = []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import django

    django.setup()
    from django.core.handlers.wsgi import WSGIHandler
    from django.test.utils import override_settings
    from django.urls import path

    urlpatterns.append(path("v1/leaderboard", view))

    def handler(middleware: list[str]) -> WSGIHandler:
        with override_settings(MIDDLEWARE=middleware):
            return WSGIHandler()

    handlers = {
        "django": handler(DJANGO_MIDDLEWARE),
        "lean": handler([LEAN_SUBCLASSES.get(m, m) for m in DJANGO_MIDDLEWARE]),
        "none": handler([]),
    }

    def run(app: WSGIHandler, cookie: str) -> float:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/v1/leaderboard",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "HTTP_HOST": "127.0.0.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
        }
        if cookie:
            environ["HTTP_COOKIE"] = cookie
        started = time.process_time()
        for _ in range(args.requests):
            response = app({**environ, "wsgi.input": io.BytesIO(b"")}, lambda *a: None)  # type: ignore[arg-type]
            b"".join(response)
            response.close()
        return (time.process_time() - started) / args.requests * 1e6

    load0 = os.getloadavg()
    with override_settings(ROOT_URLCONF=__name__):
        for label, cookie in (("no cookies", ""), ("browser cookies", "sessionid=abc; csrftoken=" + "x" * 32)):
            results: dict[str, list[float]] = {name: [] for name in handlers}
            for _ in range(args.rounds):
                for name, app in handlers.items():
                    results[name].append(run(app, cookie))
            print(f"{label}: median CPU per request over {args.rounds} alternating rounds of {args.requests}")
            for name, values in results.items():
                print(f"  {name:7s} {statistics.median(values):6.0f} us   {[round(v) for v in values]}")
    print(f"load average before/after: {load0} / {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
