"""The adversarial simulation: humans and bots play through the real score API on a simulated clock.

Every submission goes through the whole stack a production request goes through — HTTP, gunicorn,
JWT, rate limits, body validation, action-token verification, the replay checks, the fraud engine
with its Redis windows and PostgreSQL, the score transaction — with limits and fraud engine at their
defaults: over HTTP against a real server (``run(server=...)``, ``tests.fraud.simserver``), or in
this process through Django's test client. Only the clock is simulated (``tests.fraud.simclock``,
shared with the server's processes; ``tests.fraud.conftest.FakeClock`` in-process), so an hour of
play takes a minute, and every player has an address of their own (a /24 of its own, in
198.18.0.0/15), except the humans behind one NAT and the burst of fresh accounts, who share one.

Populations (seeded, reproducible):
- humans: slow (gaps ~45 s), keen (~12 s) and bursty (a few quick levels now and then) players,
  scoring small (~120), mixed (20-1000) or large (300-1000) increments, a few at the maximum;
  some of them behind one carrier NAT;
- naive bots: every 2 s at the maximum;
- jittered bots: every 5-9 s, 900-1000;
- slow farmers: the maximum, every 13-30 s (under every per-request threshold but the ceiling);
- replayers: replay a used token, send forged ones, then farm at the maximum;
- a burst of fresh accounts: one address, one user agent, the maximum in step every ~12 s;
- adaptive bots: start fast at the maximum; each block teaches them to go under the threshold that
  seemed to fire (899 instead of the ceiling, longer and jittered gaps), and they speed up again
  while nothing stops them;
- shy farmers: know ``suspicious_increment`` and stay under it (850-899), every 8-14 s;
- mimic bots: score like a human (20-1,000, a perfect level 3% of the time) every 5-7 s, about
  twice a keen human's pace.
Humans also come as "intense" players: sessions of 8-20 quick levels ~5.5 s apart, then a break.
And, added after the rules were tuned and never tuned on (the targets are checked with populations
the rules have not seen): casual players (a level every ~90 s, widely spread), skilled players
(increments around 700, a perfect level 1-6% of the time, a level every ~10 s) and streaky players
(hot runs of 3-6 large increments, then cold ones), each with a perfect-level rate of their own.

The batch job runs every 5 simulated minutes, as beat would (population sketch, scan).
"""

from __future__ import annotations

import heapq
import http.client
import json
import math
import random
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rest_framework.test import APIClient

from accounts.models import User
from fraud import services as fraud_services
from tests.conftest import access_token_for

MAX_INCREMENT = 1000
BATCH_EVERY_SECONDS = 300
# The bot classes of issue #14 (the targets are stated for them), then the ones added to check that
# the rules generalise (an attacker who knows every documented threshold).
ISSUE_BOT_KINDS = ("naive bot", "jittered bot", "slow farmer", "replayer", "fresh-account burst", "adaptive bot")
BOT_KINDS = (
    "naive bot",
    "jittered bot",
    "slow farmer",
    "replayer",
    "fresh-account burst",
    "adaptive bot",
    "shy farmer",
    "mimic bot",
)


@dataclass(frozen=True)
class Mode:
    name: str
    warmup_seconds: float  # humans only, before the bots arrive (the population the sketch learns)
    play_seconds: float
    humans: int
    nat_humans: int
    bots: dict[str, int]
    untuned_humans: int = 0  # casual, skilled and streaky players (never tuned on)


UNTUNED_KINDS = ("human casual", "human skilled", "human streaky")


QUICK = Mode(
    name="quick",
    # The bots arrive after the first batch job (at 300 s) has learned the humans' sketch, as in a
    # game with a history; before it the prior stands in (a new action type's first minutes).
    warmup_seconds=330,
    play_seconds=480,
    humans=24,
    nat_humans=8,
    untuned_humans=9,
    bots={
        "naive bot": 2,
        "jittered bot": 2,
        "slow farmer": 3,
        "replayer": 2,
        "fresh-account burst": 8,
        "adaptive bot": 2,
        "shy farmer": 2,
        "mimic bot": 2,
    },
)
FULL = Mode(
    name="full",
    warmup_seconds=600,
    play_seconds=1800,
    humans=90,
    nat_humans=20,
    untuned_humans=36,
    bots={
        "naive bot": 4,
        "jittered bot": 6,
        "slow farmer": 8,
        "replayer": 4,
        "fresh-account burst": 12,
        "adaptive bot": 6,
        "shy farmer": 4,
        "mimic bot": 4,
    },
)


@dataclass
class Actor:
    kind: str
    user: User
    ip: str
    user_agent: str
    client: APIClient | HttpPlayer
    rng: random.Random
    next_at: float
    style: str = ""
    state: dict[str, Any] = field(default_factory=dict)
    valid: int = 0  # submissions with a valid token (applied, or held back by the fraud engine)
    applied: int = 0
    blocked: int = 0
    rate_limited: int = 0
    rejected: int = 0  # forged, replayed, expired
    caught_at: int | None = None  # the valid submission at which it was first blocked or quarantined
    quarantined_at: int | None = None
    first_increment: int = 0  # of the first valid submission (the floor: every bot's 1st looks human)
    visible_points: int = 0  # applied while not quarantined: what the public boards showed
    hidden_points: int = 0  # applied while quarantined
    caught_why: str = ""  # the rules of the log that first blocked or quarantined the player (diagnosis)
    # FRAUD_SIM_DETAIL=1: per valid submission (simulated second, increment, outcome, risk, rules).
    trace: list[str] = field(default_factory=list)

    @property
    def is_bot(self) -> bool:
        return self.kind in BOT_KINDS


# --- behaviour ---------------------------------------------------------------------------------
def _human_increment(actor: Actor) -> int:
    rng = actor.rng
    if rng.random() < actor.state.get("perfect", 0.03):
        return MAX_INCREMENT  # a perfect level now and then
    if actor.style == "skilled":
        return max(1, min(MAX_INCREMENT - 1, round(rng.gauss(700, 150))))
    if actor.style == "streaky":
        left = actor.state.get("streak", 0)
        if left <= 0:
            actor.state["hot"] = not actor.state.get("hot", False)
            actor.state["streak"] = left = rng.randint(3, 6)
        actor.state["streak"] = left - 1
        return round(rng.triangular(500, MAX_INCREMENT, 800)) if actor.state["hot"] else rng.randint(10, 400)
    if actor.style == "small":
        return max(1, min(MAX_INCREMENT, round(rng.lognormvariate(math.log(120), 0.6))))
    if actor.style == "large":
        return round(rng.triangular(300, MAX_INCREMENT, 700))
    return rng.randint(20, MAX_INCREMENT)


def _human_gap(actor: Actor) -> float:
    rng = actor.rng
    if actor.kind == "human casual":
        return max(5.0, rng.lognormvariate(math.log(90), 0.8))
    if actor.kind == "human skilled":
        return max(4.0, rng.lognormvariate(math.log(10), 0.5))
    if actor.kind.endswith("intense"):
        # Short intense sessions: 8-20 quick levels ~5.5 s apart (log-normal, as times per level
        # are; at least 3.5 s), then a break of 3-15 minutes.
        left = actor.state.get("session", 0)
        if left <= 0:
            actor.state["session"] = rng.randint(8, 20)
            return rng.uniform(180.0, 900.0)
        actor.state["session"] = left - 1
        return max(3.5, rng.lognormvariate(math.log(5.5), 0.35))
    burst = actor.state.get("burst", 0)
    if burst > 0:
        actor.state["burst"] = burst - 1
        return rng.uniform(4.0, 7.0)
    if actor.kind.endswith("bursty") and rng.random() < 0.2:
        actor.state["burst"] = rng.randint(1, 3)
    median = {"slow": 45.0, "keen": 12.0}.get(actor.kind.split()[-1], 35.0)
    return max(4.0, rng.lognormvariate(math.log(median), 0.6))


def _bot_step(actor: Actor, last_status: int | None, last_code: str) -> tuple[float, int]:
    """(gap before the next submission, its increment) for a bot that just got ``last_status``."""
    rng, kind, s = actor.rng, actor.kind, actor.state
    if kind == "naive bot":
        return 2.0, MAX_INCREMENT
    if kind == "jittered bot":
        return rng.uniform(5.0, 9.0), rng.randint(900, MAX_INCREMENT)
    if kind in ("slow farmer", "replayer"):
        return rng.uniform(13.0, 30.0), MAX_INCREMENT
    if kind == "fresh-account burst":
        return 12.0 + rng.uniform(-0.5, 0.5), MAX_INCREMENT
    if kind == "shy farmer":  # knows suspicious_increment (900): stays under it, a little faster than keen humans
        return rng.uniform(8.0, 14.0), rng.randint(850, 899)
    if kind == "mimic bot":  # scores like a human (20-1,000, a perfect level now and then), twice as often
        return rng.uniform(5.0, 7.0), MAX_INCREMENT if rng.random() < 0.03 else rng.randint(20, MAX_INCREMENT)
    # adaptive: back off under whatever seemed to fire; speed up while nothing does.
    s.setdefault("gap", 6.0)
    s.setdefault("increment", MAX_INCREMENT)
    s.setdefault("jitter", 0.05)
    if last_status == 429 and last_code == "fraud_blocked":
        s["increment"] = 899 if s["increment"] > 899 else max(300, int(s["increment"] * 0.85))
        s["gap"] = min(60.0, s["gap"] * 1.6)
        s["jitter"] = 0.35
        return 60.0, s["increment"]  # Retry-After
    if last_status == 200:
        s["gap"] = max(12.5, s["gap"] * 0.92)  # never faster than 5 a minute once it has learned
    return s["gap"] * (1 + rng.uniform(-s["jitter"], s["jitter"])), s["increment"]


# --- the run -----------------------------------------------------------------------------------
@dataclass
class Report:
    mode: str
    seed: int
    actors: list[Actor]
    simulated_seconds: float

    def population(self, kind: str) -> list[Actor]:
        return [a for a in self.actors if a.kind == kind]

    @property
    def kinds(self) -> list[str]:
        seen: list[str] = []
        for a in self.actors:
            if a.kind not in seen:
                seen.append(a.kind)
        return seen

    @property
    def bots(self) -> list[Actor]:
        return [a for a in self.actors if a.is_bot]

    @property
    def humans(self) -> list[Actor]:
        return [a for a in self.actors if not a.is_bot]

    def class_recall(self, kind: str, k: int) -> float:
        bots = [b for b in self.population(kind) if b.valid > 0]
        return sum(1 for b in bots if b.caught_at is not None and b.caught_at <= k) / len(bots) if bots else 1.0

    def recall(self, k: int, kinds: tuple[str, ...] | None = None) -> float:
        bots = [b for b in self._bots_of(kinds) if b.valid > 0]
        return sum(1 for b in bots if b.caught_at is not None and b.caught_at <= k) / len(bots) if bots else 1.0

    def _bots_of(self, kinds: tuple[str, ...] | None) -> list[Actor]:
        return [b for b in self.bots if kinds is None or b.kind in kinds]

    def share(self, kinds: tuple[str, ...] | None = None) -> float:
        """Bots' (of ``kinds``, or all) share of the points on public boards beside the humans'."""
        bots = sum(b.visible_points for b in self._bots_of(kinds))
        humans = sum(h.visible_points for h in self.humans)
        return bots / (bots + humans) if bots + humans else 0.0

    def floor(self, kinds: tuple[str, ...] | None = None) -> float:
        """The share if every bot were stopped from its 2nd valid submission (its 1st looks human)."""
        bots = sum(b.first_increment for b in self._bots_of(kinds))
        humans = sum(h.visible_points for h in self.humans)
        return bots / (bots + humans) if bots + humans else 0.0

    def share_ratio(self, kinds: tuple[str, ...] | None = None) -> float:
        floor = self.floor(kinds)
        return self.share(kinds) / floor if floor else 0.0

    @property
    def bot_share(self) -> float:
        return self.share()

    @property
    def floor_share(self) -> float:
        return self.floor()

    @property
    def humans_blocked(self) -> int:
        return sum(1 for h in self.humans if h.blocked)

    @property
    def humans_quarantined(self) -> int:
        return sum(1 for h in self.humans if h.quarantined_at is not None)

    def table(self, detail: int = 0) -> str:
        header = (
            "| population | players | submissions | valid | applied | blocked | quarantined players | "
            "caught (of players) | caught by #3 | first caught, median (max) | points on public boards |"
        )
        lines = [header, "|" + "---|" * 11]
        for kind in self.kinds:
            group = self.population(kind)
            caught = sorted(a.caught_at for a in group if a.caught_at is not None)
            median = caught[len(caught) // 2] if caught else None
            lines.append(
                f"| {kind} | {len(group)} | {sum(a.valid + a.rejected + a.rate_limited for a in group)} | "
                f"{sum(a.valid for a in group)} | {sum(a.applied for a in group)} | {sum(a.blocked for a in group)} | "
                f"{sum(1 for a in group if a.quarantined_at is not None)} | {len(caught)} | "
                f"{sum(1 for c in caught if c <= 3) if group[0].is_bot else '—'} | "
                f"{f'#{median} (#{caught[-1]})' if caught else '—'} | {sum(a.visible_points for a in group):,} |"
            )
        lines.append("")
        for a in self.humans:
            if a.caught_at is not None:
                lines.append(f"- {a.kind} {a.style} {a.user.username}: caught at #{a.caught_at}: {a.caught_why}")
        if detail:
            for a in self.actors:
                if a.is_bot or a.caught_at is not None or (a.trace and detail > 1):
                    lines.append(f"* {a.kind} {a.style} {a.user.username} caught at #{a.caught_at}: {a.caught_why}")
                    lines.extend(f"    {t}" for t in a.trace[: max(6, (a.caught_at or 0) + 1)])
        issue = ISSUE_BOT_KINDS
        lines.append(
            f"issue #14's bot classes: recall@3 {self.recall(3, issue):.0%}, share {self.share(issue):.2%} "
            f"(floor {self.floor(issue):.2%}, ratio {self.share_ratio(issue):.2f}); all bots:"
        )
        lines.append(
            f"recall@2 {self.recall(2):.0%}, recall@3 {self.recall(3):.0%}, recall@5 {self.recall(5):.0%}; "
            f"bots' share of points {self.bot_share:.2%} (floor {self.floor_share:.2%}, "
            f"ratio {self.bot_share / self.floor_share if self.floor_share else 0:.2f}); "
            f"humans blocked {self.humans_blocked} of {len(self.humans)}, "
            f"quarantined {self.humans_quarantined} ({self.humans_quarantined / max(1, len(self.humans)):.1%})"
        )
        return "\n".join(lines)


def _address(n: int) -> str:
    return f"198.{18 + n // 256}.{n % 256}.7"


class HttpPlayer:
    """A player's client against a real server (``run(server=...)``): the one call ``_post`` makes
    of an ``APIClient``, sent over HTTP. The player's address travels in X-Forwarded-For, which the
    server trusts from 127.0.0.1 only (TRUSTED_PROXIES), as it trusts nginx in production."""

    def __init__(self, server: str, jwt: str) -> None:
        parsed = urllib.parse.urlsplit(server)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.jwt = jwt

    def post(self, path: str, data: dict[str, Any], *, format: str, REMOTE_ADDR: str, HTTP_USER_AGENT: str) -> Any:
        assert format == "json"
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            connection.request(
                "POST",
                path,
                body=json.dumps(data).encode(),
                headers={
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {self.jwt}",
                    "X-Forwarded-For": REMOTE_ADDR,
                    "User-Agent": HTTP_USER_AGENT,
                },
            )
            response = connection.getresponse()
            return HttpAnswer(response.status, response.read())
        finally:
            connection.close()


@dataclass
class HttpAnswer:
    status_code: int
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


def run(
    *,
    mode: Mode,
    seed: int,
    clock: Any,
    make_player: Callable[..., User],
    mint: Callable[..., str],
    server: str | None = None,
) -> Report:
    """Play ``mode`` on ``seed``: in this process through Django's test client, or, with ``server``
    (a base URL such as ``http://127.0.0.1:8000``), over HTTP against that server, which must share
    this process' database, Redis and clock (``tests.fraud.simserver``)."""
    rng = random.Random(seed)
    actors: list[Actor] = []
    # Start on the hour: the token timestamps (whole seconds) and the velocity windows' buckets then
    # fall the same way in every run, so a seed gives the same table.
    clock.now = math.floor(clock.now / 3600) * 3600 + 3600
    start = clock.now

    def client_for(user: User) -> APIClient | HttpPlayer:
        if server is not None:
            return HttpPlayer(server, access_token_for(user))
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(user)}")
        return client

    def add(kind: str, *, ip: str, user_agent: str, at: float, style: str = "") -> Actor:
        n = len(actors)
        user = make_player(username=f"{kind.split()[0][:6]}{n}_{seed}")
        actor = Actor(
            kind=kind,
            user=user,
            ip=ip,
            user_agent=user_agent,
            client=client_for(user),
            rng=random.Random(rng.getrandbits(32)),
            next_at=at,
            style=style,
        )
        actors.append(actor)
        return actor

    for i in range(mode.humans):
        pace = ("slow", "keen", "bursty", "intense")[i % 4]
        style = rng.choice(("small", "mixed", "mixed", "large"))
        nat = i < mode.nat_humans
        add(
            f"human {pace}" if not nat else "human behind NAT",
            ip="100.64.0.1" if nat else _address(len(actors)),
            user_agent=rng.choice(
                ("Mozilla/5.0 (iPhone)", "Mozilla/5.0 (Windows NT 10.0)", "Mozilla/5.0 (Android 14)")
            ),
            at=start + rng.uniform(0, 60),
            style=style,
        )
        if nat:
            actors[-1].state["pace"] = pace
    for i in range(mode.untuned_humans):
        kind = UNTUNED_KINDS[i % len(UNTUNED_KINDS)]
        style = {"human skilled": "skilled", "human streaky": "streaky"}.get(kind, rng.choice(("small", "mixed")))
        add(
            kind,
            ip=_address(len(actors)),
            user_agent=rng.choice(("Mozilla/5.0 (iPhone)", "Mozilla/5.0 (Macintosh)", "Mozilla/5.0 (Android 13)")),
            at=start + rng.uniform(0, 90),
            style=style,
        )
        actors[-1].state["perfect"] = rng.uniform(0.01, 0.06)
    bots_at = start + mode.warmup_seconds
    burst_ip = "198.19.255.9"
    for kind, count in mode.bots.items():
        for _ in range(count):
            if kind == "fresh-account burst":
                add(kind, ip=burst_ip, user_agent="python-requests/2.32", at=bots_at + 1 + rng.uniform(0, 2))
            else:
                add(
                    kind,
                    ip=_address(len(actors)),
                    user_agent="Mozilla/5.0 (Windows NT 10.0)",
                    at=bots_at + rng.uniform(0, 60),
                )
    # Players have played for weeks; the burst's accounts are fresh (created just before they start),
    # and so are the other bots' a day ago (a farm's accounts are cheap).
    User.objects.update(date_joined=_datetime(start - 30 * 86400))
    User.objects.filter(pk__in=[a.user.pk for a in actors if a.is_bot]).update(date_joined=_datetime(start - 86400))
    User.objects.filter(pk__in=[a.user.pk for a in actors if a.kind == "fresh-account burst"]).update(
        date_joined=_datetime(bots_at - 30)
    )
    for a in actors:
        a.user.refresh_from_db()

    end = bots_at + mode.play_seconds
    with _Tracer() as tracer:
        _loop(actors, start=start, end=end, clock=clock, mint=mint, tracer=tracer)
    return Report(mode=mode.name, seed=seed, actors=actors, simulated_seconds=end - start)


def _loop(actors: list[Actor], *, start: float, end: float, clock: Any, mint: Callable[..., str], tracer: Any) -> None:
    queue = [(a.next_at, i) for i, a in enumerate(actors)]
    heapq.heapify(queue)
    next_batch = start + BATCH_EVERY_SECONDS
    last: dict[int, tuple[int | None, str]] = {}
    while queue:
        at, i = heapq.heappop(queue)
        if at > end:
            continue
        while next_batch <= at:
            clock.now = next_batch
            fraud_services.fraud_batch_scan()
            next_batch += BATCH_EVERY_SECONDS
        clock.now = at
        actor = actors[i]
        valid_before = actor.valid
        status, code = _play_once(actor, mint=mint, clock=clock, last=last.get(i, (None, "")))
        last[i] = (status, code)
        if actor.valid > valid_before:
            actor.trace.append(_trace_line(actor, at - start, status, tracer.last.get(str(actor.user.pk))))
        if actor.is_bot:
            gap, actor.state["next_increment"] = _bot_step(actor, status, code)
        else:
            actor.state["next_increment"] = _human_increment(actor)
            if actor.kind == "human behind NAT":
                pace = actor.state.get("pace", "slow")
                actor.kind = f"human {pace}"
                gap = _human_gap(actor)
                actor.kind = "human behind NAT"
            else:
                gap = _human_gap(actor)
        heapq.heappush(queue, (at + gap, i))


def _trace_line(actor: Actor, second: float, status: int, assessment: Any) -> str:
    increment = actor.state.get("last_increment", 0)
    if assessment is None:  # blocked: the verdict is in the fraud log the 429 points to
        from fraud.models import FraudLog

        log = FraudLog.objects.filter(user=actor.user).order_by("-created_at").first()
        risk, outcome, fired = (log.risk_score, "block", log.metadata.get("rules", [])) if log else (0, "?", [])
    else:
        risk, outcome, fired = assessment.risk_score, assessment.decision, assessment.reasons
    rules = ", ".join(f"{r['rule']} {r['weighted']}" for r in fired)
    return f"#{actor.valid} t={second:.0f}s +{increment} {status} {outcome} risk {risk} [{rules}]"


class _Tracer:
    """Wraps the score path's fraud assessor (``scores.events.bus.assessor``) to keep the last verdict
    of each player: the per-player trace of FRAUD_SIM_DETAIL=1 (in-process mode only)."""

    def __init__(self) -> None:
        from scores import events

        self.events = events
        self.inner = events.bus.assessor
        self.last: dict[str, Any] = {}

    def __enter__(self) -> _Tracer:
        self.events.bus.assessor = self
        return self

    def __exit__(self, *exc: object) -> None:
        self.events.bus.assessor = self.inner

    def __call__(self, **kwargs: Any) -> Any:
        user_id = str(kwargs["user"].pk)
        self.last.pop(user_id, None)
        assessment = self.inner(**kwargs)
        self.last[user_id] = assessment
        return assessment


def _datetime(ts: float) -> Any:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, tz=dt.UTC)


def _post(actor: Actor, token: str) -> tuple[int, str]:
    response = actor.client.post(
        "/v1/scores/update",
        {"action_token": token},
        format="json",
        REMOTE_ADDR=actor.ip,
        HTTP_USER_AGENT=actor.user_agent,
    )
    code = "" if response.status_code == 200 else str(response.json()["error"]["code"])
    return response.status_code, code


def _play_once(actor: Actor, *, mint: Callable[..., str], clock: Any, last: tuple[int | None, str]) -> tuple[int, str]:
    if actor.kind == "replayer" and "replayed" not in actor.state and actor.state.get("used"):
        # Replays of the used token and forged ones: refused (409/401), never applied.
        actor.state["replayed"] = True
        for _ in range(3):
            status, _code = _post(actor, actor.state["used"])
            actor.rejected += 1
            assert status == 409, status
        for _ in range(2):
            status, _code = _post(actor, actor.state["used"][:-4] + "AAAA")
            actor.rejected += 1
            assert status == 401, status
    increment = int(
        actor.state.get("next_increment") or (_human_increment(actor) if not actor.is_bot else MAX_INCREMENT)
    )
    token = mint(actor.user, increment=increment)
    actor.state["last_increment"] = increment
    status, code = _post(actor, token)
    if status == 429 and code != "fraud_blocked":
        actor.rate_limited += 1
        return status, code
    assert status in (200, 429), (status, code)
    actor.valid += 1
    if actor.valid == 1:
        actor.first_increment = increment
    if status == 200:
        actor.applied += 1
        actor.state["used"] = token
        quarantined = User.objects.filter(pk=actor.user.pk, is_quarantined=True).exists()
        if quarantined and actor.quarantined_at is None:
            actor.quarantined_at = actor.valid
            if actor.caught_at is None:
                actor.caught_at = actor.valid
                actor.caught_why = _why(actor)
        if quarantined:  # the submission that quarantined the player is hidden too
            actor.hidden_points += increment
        else:
            actor.visible_points += increment
    else:
        actor.blocked += 1
        if actor.caught_at is None:
            actor.caught_at = actor.valid
            actor.caught_why = _why(actor)
    return status, code


def _why(actor: Actor) -> str:
    """The newest fraud log's rules with their reasons (what a moderator would read)."""
    from fraud.models import FraudLog

    log = FraudLog.objects.filter(user=actor.user).order_by("-created_at").first()
    if log is None:
        return "no fraud log (batch scan?)"
    return f"risk {log.risk_score}: " + "; ".join(
        f"{r['rule']} {r['weighted']}: {r['reason']}" for r in log.metadata.get("rules", [])
    )
