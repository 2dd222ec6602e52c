"""The adversarial simulation's server: the production WSGI application, on the simulation's clock.

    FRAUD_SIM_CLOCK_FILE=/tmp/clock DATABASE_URL=... REDIS_URL=... TRUSTED_PROXIES=127.0.0.1 \\
        gunicorn -c deploy/gunicorn.conf.py tests.fraud.simserver:application

``scoreboard.wsgi``'s application — the same middleware, rate limits, fraud engine, PostgreSQL and
Redis as in production, under the same gunicorn settings — with one change: its clocks read
``tests.fraud.simclock`` (the file FRAUD_SIM_CLOCK_FILE names, which the driver moves). Without
FRAUD_SIM_CLOCK_FILE it refuses to load.
"""

from __future__ import annotations

import os

from tests.fraud import simclock

if not os.environ.get(simclock.CLOCK_FILE_ENV):
    raise RuntimeError(f"tests.fraud.simserver runs only for the simulation: {simclock.CLOCK_FILE_ENV} is not set")

from scoreboard.wsgi import application  # only once the guard above has passed

__all__ = ["application"]
simclock.install(simclock.SharedClock(os.environ[simclock.CLOCK_FILE_ENV]))
