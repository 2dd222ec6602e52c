"""What the fraud engine costs a web worker per score update, for players with a history.

    DATABASE_URL=... REDIS_URL=... python -m bench.fraud_cost [--players 500] [--rounds 5]

``bench.profile_update --stages`` measures the whole pipeline on players whose fraud windows are empty
(so that runs compare and no rule fires). A real player has a full window (``fraud.windows``: the
last 20 attempts), which the engine decodes and the rules walk on every update. This tool measures
one step in isolation, in this process (CPU time: ``time.process_time``), alternating in each round:

- ``engine``: ``fraud.services.score_attempt_assess`` — the pre-write Redis script (the replay
  pre-filter's two SET NX, the window, the velocity budgets, the clusters), decoding its answer, the
  population sketch and the rules — for a player whose window holds 20 earlier attempts spaced
  like a keen human's (12-40 s apart, mixed increments), so no rule blocks;
- ``floor``: what the score path needs before the write without a fraud engine: one script call
  doing the replay pre-filter's two SET NX on the same keys.

The difference is the fraud engine's own worker CPU per update (issue #14's target: <= 0.2 ms). The
rate-limit counters and the player card ride in the same script in production in both cases, so
they are left out of both. A measuring tool, not a test.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from typing import Any


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--players", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres") or not os.environ.get("REDIS_URL"):
        print("needs DATABASE_URL (PostgreSQL) and REDIS_URL", file=sys.stderr)
        return 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scoreboard.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from accounts.models import User
    from fraud import services as fraud_services
    from fraud import windows
    from fraud.rules import Attempt
    from scoreboard.redis import get_redis, registered_script
    from scores.action_tokens import ActionClaims
    from scores.services import RequestContext, _prefilter_keys, _prefilter_ttl

    call_command("migrate", verbosity=0)
    client = get_redis()
    assert client is not None
    rng = random.Random(7)
    users: list[Any] = []
    for i in range(args.players):
        user, _ = User.objects.get_or_create(username=f"fcost{i:04d}", defaults={"email": f"fcost{i}@example.invalid"})
        users.append(user)
    # A player keeps an address (each on a /24 of its own, as in bench.run): the subnet and
    # fingerprint of a known address come from the per-process caches, as in production.
    addresses = {u.pk: f"198.{18 + n // 65536}.{n // 256 % 256}.{n % 256}" for n, u in enumerate(users)}
    User.objects.filter(pk__in=[u.pk for u in users]).update(date_joined=django.utils.timezone.now())
    floor_script = registered_script(
        client,
        "local fresh = 1\n"
        "for i = 1, #KEYS do if not redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[1]) then fresh = 0 end end\n"
        "return fresh",
    )

    def history(user: Any, now: float) -> None:
        """A keen human's last 20 attempts, newest first, ending a little before ``now``."""
        key = windows._player_key(str(user.pk))
        at = now - rng.uniform(12, 40)
        entries = []
        for _ in range(windows.WINDOW_SIZE):
            attempt = Attempt(
                submitted_at=at,
                action_timestamp=int(at) - 5,
                action_type="LEVEL_COMPLETION",
                score_increment=rng.choice((40, 120, 300, 520, 760)),
                action_id=uuid.uuid4().hex,
            )
            entries.append(windows.encode(attempt))
            at -= rng.uniform(12, 40)
        client.delete(key)
        client.rpush(key, *entries)

    def claims_for(user: Any, now: float) -> ActionClaims:
        return ActionClaims(
            action_id=uuid.uuid4().hex,
            user_id=str(user.pk),
            action_type="LEVEL_COMPLETION",
            score_increment=rng.choice((40, 120, 300, 520, 760)),
            timestamp=int(now) - 20,
            nonce=uuid.uuid4().hex,
        )

    def engine_once(user: Any) -> float:
        now = time.time()
        claims = claims_for(user, now)
        context = RequestContext(ip_address=addresses[user.pk], user_agent="bench")
        started = time.process_time()
        assessment = fraud_services.score_attempt_assess(
            user=user, claims=claims, context=context, once_keys=_prefilter_keys(claims), once_ttl=_prefilter_ttl()
        )
        spent = time.process_time() - started
        assert not assessment.blocked and not assessment.repeat, assessment
        return spent

    def floor_once(user: Any) -> float:
        claims = claims_for(user, time.time())
        started = time.process_time()
        floor_script(keys=list(_prefilter_keys(claims)), args=[_prefilter_ttl()])
        return time.process_time() - started

    for user in users[:50]:  # warm up: connections, scripts, the population sketch, the rules' config
        history(user, time.time())
        engine_once(user)
        floor_once(user)
    results: dict[str, list[float]] = {"engine": [], "floor": []}
    for rnd in range(args.rounds):
        for name in ("engine", "floor") if rnd % 2 == 0 else ("floor", "engine"):
            spent = 0.0
            for user in users:
                if name == "engine":
                    history(user, time.time())  # not timed
                    spent += engine_once(user)
                else:
                    spent += floor_once(user)
            results[name].append(spent / len(users) * 1000)
    print(f"{args.players} players x {args.rounds} alternating rounds, ms of this process' CPU per update:")
    for name, values in results.items():
        print(f"  {name:6s} best {min(values):.3f}  median {statistics.median(values):.3f}  ({values})")
    own = [e - f for e, f in zip(results["engine"], results["floor"], strict=True)]
    print(
        f"  the fraud engine's own cost (engine - floor, per round): best {min(own):.3f}  "
        f"median {statistics.median(own):.3f} ms  (target <= 0.2 ms)"
    )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
