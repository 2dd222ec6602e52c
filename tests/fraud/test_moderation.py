"""Moderation in Django admin: a moderator reviews fraud logs and confirms or dismisses them."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.utils import timezone

from accounts.models import User
from fraud import services as fraud_services
from fraud.groups import MODERATORS_GROUP, moderators_group_ensure
from fraud.models import FraudLog, ModerationAction
from scoreboard.errors import ApiError, Conflict
from scores.models import ScoreHistory
from tests.conftest import submit

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

CHANGELIST = "/admin/fraud/fraudlog/"


def staff(make_player, *, moderator: bool, **kwargs: Any) -> User:
    user = make_player(is_staff=True, **kwargs)
    if moderator:
        user.groups.add(Group.objects.get(name=MODERATORS_GROUP))
    return user


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def moderator(make_player) -> User:
    return staff(make_player, moderator=True, username="mod_alice")


# The moderation tests replay the scenario of the bug report: the engine as it was before the
# velocity, population and cluster rules (which would stop this bot at its 3rd attempt).
PRE_ISSUE_14_WEIGHTS = {
    **settings.DEFAULT_FRAUD_RULE_WEIGHTS,
    "velocity_budget": 0,
    "increment_persistence": 0,
    "opening_run": 0,
    "account_cluster": 0,
}


@pytest.fixture
def cheater_and_honest(make_player, client_for, mint, clock, settings) -> tuple[User, User]:
    """An honest player on 2,500 and a bot that got 4 x 1,000 through (3 flagged) before being blocked."""
    settings.FRAUD_RULE_WEIGHTS = PRE_ISSUE_14_WEIGHTS
    honest, cheater = make_player(username="honest"), make_player(username="cheater")
    assert submit(client_for(honest), mint(honest, increment=900)).status_code == 200
    clock.advance(60)
    assert submit(client_for(honest), mint(honest, increment=800)).status_code == 200
    clock.advance(45)
    assert submit(client_for(honest), mint(honest, increment=800)).status_code == 200
    bot = client_for(cheater)
    statuses = []
    for _ in range(5):
        clock.advance(1)
        statuses.append(submit(bot, mint(cheater, increment=1000)).status_code)
    assert statuses == [200, 200, 200, 200, 429]
    return cheater, honest


def board(api_client) -> list[tuple[str, int]]:
    rows = api_client.get("/v1/leaderboard").json()["data"]["leaderboard"]
    return [(r["username"], r["score"]) for r in rows]


def result_count(response) -> int:
    return int(response.context["cl"].result_count)


def confirm_via_admin(client: Client, logs: list[FraudLog], reason: str, action: str = "confirm"):
    selected = [str(log.pk) for log in logs]
    form = client.post(CHANGELIST, {"action": action, "_selected_action": selected})
    assert form.status_code == 200  # the intermediate page asking why
    assert b"reason" in form.content
    return client.post(CHANGELIST, {"action": action, "_selected_action": selected, "apply": "1", "reason": reason})


def test_moderators_group_has_exactly_the_needed_permissions():
    group = Group.objects.get(name=MODERATORS_GROUP)
    granted = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}
    assert granted == {
        "fraud.view_fraudlog",
        "fraud.moderate_fraudlog",
        "fraud.view_moderationaction",
        "scores.view_scorehistory",
        "accounts.view_user",
    }
    # Running it again resets a hand-added permission.
    group.permissions.add(Permission.objects.get(codename="delete_user"))
    moderators_group_ensure()
    assert not group.permissions.filter(codename="delete_user").exists()


def test_moderator_sees_filters_and_searches_fraud_logs(cheater_and_honest, moderator):
    cheater, _ = cheater_and_honest
    client = logged_in(moderator)

    page = client.get(CHANGELIST)
    assert page.status_code == 200
    assert result_count(page) == 1  # one incident: its first log, standing for 3 flagged + 1 blocked
    assert page.context["cl"].result_list[0].member_count == 3
    assert b"cheater" in page.content

    assert result_count(client.get(CHANGELIST, {"decision__exact": "blocked"})) == 1
    assert result_count(client.get(CHANGELIST, {"status__exact": "open"})) == 4
    assert result_count(client.get(CHANGELIST, {"rule": "timing_regularity"})) == 1
    assert result_count(client.get(CHANGELIST, {"rule": "min_play_time"})) == 4
    assert result_count(client.get(CHANGELIST, {"rule": "shared_ip"})) == 0
    assert result_count(client.get(CHANGELIST, {"risk": "high"})) == 1
    assert result_count(client.get(CHANGELIST, {"risk": "medium"})) == 3
    assert result_count(client.get(CHANGELIST, {"q": "cheater"})) == 4
    assert result_count(client.get(CHANGELIST, {"q": "honest"})) == 0

    log = FraudLog.objects.filter(user=cheater, decision=FraudLog.Decision.BLOCKED).get()
    detail = client.get(f"{CHANGELIST}{log.pk}/change/")
    assert detail.status_code == 200
    assert b"minimum play time is 3s" in detail.content  # the explanation, in words


def test_confirming_bans_reverses_the_scores_and_the_board_changes(
    cheater_and_honest, moderator, api_client, client_for, mint, django_capture_on_commit_callbacks
):
    cheater, _ = cheater_and_honest
    cheater_client = client_for(cheater)
    assert board(api_client) == [("cheater", 4000), ("honest", 2500)]
    logs = list(FraudLog.objects.filter(user=cheater))

    with django_capture_on_commit_callbacks(execute=True):
        done = confirm_via_admin(logged_in(moderator), logs, reason="constant 1 s rhythm at the ceiling")
    assert done.status_code == 302

    cheater.refresh_from_db()
    assert cheater.is_active is False
    # Every action of the burst was reversed, the first (unflagged) one too: it was 1 s before the next.
    assert cheater.current_score == 0
    reversals = ScoreHistory.objects.filter(user=cheater, kind=ScoreHistory.Kind.REVERSAL)
    assert sorted(r.score_increment for r in reversals) == [-1000, -1000, -1000, -1000]
    assert ScoreHistory.objects.filter(user=cheater, kind=ScoreHistory.Kind.ACTION).count() == 4  # append-only
    assert board(api_client) == [("honest", 2500)]

    assert set(FraudLog.objects.filter(user=cheater).values_list("status", flat=True)) == {"confirmed"}
    # One incident, one decision: the first confirmation closed the other three logs of the burst
    # (the admin skipped them as already confirmed), and its audit row says what happened.
    audit = ModerationAction.objects.get(action="confirm")
    assert audit.moderator_username == "mod_alice"
    assert audit.reason == "constant 1 s rhythm at the ceiling"
    assert audit.details["points_removed"] == 4000
    assert audit.details["ban"] == "banned"
    assert len(audit.details["reversed_history_ids"]) == 4
    assert len(audit.details["incident_logs_closed"]) == 3
    log = FraudLog.objects.filter(user=cheater).first()
    assert log is not None and log.reviewed_by == moderator and log.reviewed_at is not None

    # The banned player's session no longer works.
    refused = submit(cheater_client, mint(cheater, increment=10))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "account_disabled"


def test_dismissing_keeps_the_score_and_is_audited(cheater_and_honest, moderator, api_client):
    cheater, _ = cheater_and_honest
    log = FraudLog.objects.filter(user=cheater, decision=FraudLog.Decision.FLAGGED).first()
    assert log is not None
    done = confirm_via_admin(logged_in(moderator), [log], reason="speedrunner, known", action="dismiss")
    assert done.status_code == 302
    log.refresh_from_db()
    assert log.status == FraudLog.Status.DISMISSED
    cheater.refresh_from_db()
    assert cheater.is_active and cheater.current_score == 4000
    action = ModerationAction.objects.get(fraud_log=log)
    assert (action.action, action.moderator, action.reason) == ("dismiss", moderator, "speedrunner, known")
    # The whole incident is dismissed with it.
    assert set(FraudLog.objects.filter(user=cheater).values_list("status", flat=True)) == {"dismissed"}
    assert len(action.details["incident_logs_closed"]) == 3


def test_a_reason_is_required(cheater_and_honest, moderator):
    cheater, _ = cheater_and_honest
    log = FraudLog.objects.filter(user=cheater).first()
    assert log is not None
    again = logged_in(moderator).post(
        CHANGELIST, {"action": "confirm", "_selected_action": [str(log.pk)], "apply": "1", "reason": "  "}
    )
    assert again.status_code == 200  # the form again, with its error
    log.refresh_from_db()
    assert log.status == FraudLog.Status.OPEN
    cheater.refresh_from_db()
    assert cheater.is_active
    with pytest.raises(ApiError):
        fraud_services.fraud_log_confirm(fraud_log=log, moderator=cheater, reason="")


def test_a_closed_log_cannot_be_decided_twice(cheater_and_honest, moderator, make_player):
    cheater, _ = cheater_and_honest
    log = FraudLog.objects.filter(user=cheater).first()
    assert log is not None
    fraud_services.fraud_log_dismiss(fraud_log=log, moderator=moderator, reason="looks fine")
    other = staff(make_player, moderator=True)
    with pytest.raises(Conflict):
        fraud_services.fraud_log_confirm(fraud_log=log, moderator=other, reason="no, it is a bot")
    # Through admin the closed log is skipped.
    logged_in(other).post(
        CHANGELIST, {"action": "confirm", "_selected_action": [str(log.pk)], "apply": "1", "reason": "bot"}
    )
    assert ModerationAction.objects.filter(fraud_log=log).count() == 1
    cheater.refresh_from_db()
    assert cheater.is_active


def test_a_staff_user_who_is_not_a_moderator_can_neither_see_nor_act(cheater_and_honest, make_player):
    cheater, _ = cheater_and_honest
    client = logged_in(staff(make_player, moderator=False))
    log = FraudLog.objects.filter(user=cheater).first()
    assert log is not None
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(f"{CHANGELIST}{log.pk}/change/").status_code == 403
    acted = client.post(
        CHANGELIST, {"action": "confirm", "_selected_action": [str(log.pk)], "apply": "1", "reason": "x"}
    )
    assert acted.status_code == 403
    log.refresh_from_db()
    cheater.refresh_from_db()
    assert log.status == FraudLog.Status.OPEN and cheater.is_active


def test_viewing_logs_is_not_enough_to_act(cheater_and_honest, make_player):
    cheater, _ = cheater_and_honest
    viewer = staff(make_player, moderator=False)
    viewer.user_permissions.add(Permission.objects.get(codename="view_fraudlog"))
    client = logged_in(viewer)
    assert client.get(CHANGELIST).status_code == 200
    log = FraudLog.objects.filter(user=cheater).first()
    assert log is not None
    client.post(CHANGELIST, {"action": "confirm", "_selected_action": [str(log.pk)], "apply": "1", "reason": "x"})
    log.refresh_from_db()
    assert log.status == FraudLog.Status.OPEN
    assert not ModerationAction.objects.exists()


def test_the_player_page_shows_score_recent_history_and_fraud_logs(cheater_and_honest, moderator):
    cheater, _ = cheater_and_honest
    page = logged_in(moderator).get(f"/admin/accounts/user/{cheater.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "4000" in html  # current score
    assert "score history (last 20)" in html.lower()
    assert "fraud logs (last 20)" in html.lower()
    assert "timing_regularity" in html


def test_history_and_audit_are_read_only_for_moderators(cheater_and_honest, moderator):
    client = logged_in(moderator)
    assert client.get("/admin/scores/scorehistory/").status_code == 200
    assert client.get("/admin/scores/scorehistory/add/").status_code == 403
    assert client.get("/admin/fraud/moderationaction/").status_code == 200
    assert client.get("/admin/fraud/fraudlog/add/").status_code == 403


@pytest.fixture
def quarantined_bot(make_player, client_for, mint, clock) -> User:
    """A bot at the ceiling, one second apart: applied, but quarantined from its 2nd submission."""
    bot = make_player(username="shadow")
    for _ in range(3):
        clock.advance(1)
        assert submit(client_for(bot), mint(bot, increment=1000)).status_code == 200
    bot.refresh_from_db()
    assert bot.is_quarantined
    return bot


def test_release_puts_the_player_back_with_their_score_and_rebroadcasts(
    quarantined_bot, moderator, monkeypatch, django_capture_on_commit_callbacks
):
    changed: list[str] = []
    monkeypatch.setattr(
        "scores.services.player_standing_changed", lambda *, user_id, **kw: changed.append(str(user_id))
    )
    logs = list(FraudLog.objects.filter(user=quarantined_bot, decision=FraudLog.Decision.QUARANTINED))
    assert len(logs) == 2
    with django_capture_on_commit_callbacks(execute=True):
        done = confirm_via_admin(logged_in(moderator), logs[:1], reason="a speedrunner we know", action="release")
    assert done.status_code == 302
    quarantined_bot.refresh_from_db()
    assert quarantined_bot.is_quarantined is False
    assert quarantined_bot.current_score == 3000  # released with the score
    assert changed == [str(quarantined_bot.pk)]  # re-indexed and re-broadcast
    assert set(FraudLog.objects.filter(user=quarantined_bot).values_list("status", flat=True)) == {"dismissed"}
    audit = ModerationAction.objects.get(action="release")
    assert audit.details["released"] is True and len(audit.details["also_closed"]) == 1


def test_confirm_page_previews_what_will_be_removed(quarantined_bot, moderator):
    log = FraudLog.objects.filter(user=quarantined_bot).order_by("created_at").first()
    assert log is not None
    page = logged_in(moderator).post(CHANGELIST, {"action": "confirm", "_selected_action": [str(log.pk)]})
    assert page.status_code == 200
    preview = page.context["previews"][0]
    assert (preview.current_score, preview.points_to_remove, preview.score_after) == (3000, 3000, 0)
    assert len(preview.actions) == 3
    assert b'id="preview"' in page.content


def test_the_list_shows_open_incidents_by_default_with_status_rules_and_seconds(cheater_and_honest, moderator):
    cheater, honest = cheater_and_honest
    client = logged_in(moderator)
    closed = FraudLog.objects.create(user=honest, event_type="x", risk_score="0.55", decision="flagged")
    fraud_services.fraud_log_dismiss(fraud_log=closed, moderator=moderator, reason="known speedrunner")

    page = client.get(CHANGELIST)
    assert result_count(page) == 1  # the cheater's open incident, one row for its 4 logs
    assert b'<td class="field-logs">4</td>' in page.content
    assert result_count(client.get(CHANGELIST, {"status__exact": "dismissed"})) == 1
    columns = list(page.context["cl"].list_display)[1:]
    assert columns == ["when", "user", "status", "decision", "risk_score", "rules_fired", "logs"]
    head = FraudLog.objects.filter(user=cheater, incident__isnull=True).get()
    when = timezone.localtime(head.created_at)
    assert when.strftime("%Y-%m-%d %H:%M:%S %Z").encode() in page.content  # to the second, with the zone
    detail = client.get(f"{CHANGELIST}{head.pk}/change/")
    assert detail.content.count(b"/admin/fraud/fraudlog/") >= 4  # the incident's logs, linked


def test_the_detail_page_has_the_buttons_its_reader_may_use(cheater_and_honest, moderator, make_player):
    cheater, _ = cheater_and_honest
    log = FraudLog.objects.filter(user=cheater).first()
    assert log is not None
    url = f"{CHANGELIST}{log.pk}/change/"
    page = logged_in(moderator).get(url)
    assert b'name="moderate-confirm"' in page.content and b'name="moderate-dismiss"' in page.content
    assert b'name="moderate-release"' not in page.content  # not quarantined

    # Pressing Confirm opens the page that asks why and previews what will be removed.
    form = logged_in(moderator).post(CHANGELIST, {"action": "confirm", "_selected_action": [str(log.pk)]})
    assert form.status_code == 200 and b'id="preview"' in form.content

    viewer = staff(make_player, moderator=False)
    viewer.user_permissions.add(Permission.objects.get(codename="view_fraudlog"))
    assert b"moderate-confirm" not in logged_in(viewer).get(url).content  # no button that answers 403

    fraud_services.fraud_log_dismiss(fraud_log=log, moderator=moderator, reason="fine")
    assert b"moderate-confirm" not in logged_in(moderator).get(url).content  # closed: nothing to press


def test_the_player_page_says_who_banned_the_player_when_and_why(cheater_and_honest, moderator):
    cheater, _ = cheater_and_honest
    log = FraudLog.objects.filter(user=cheater, decision=FraudLog.Decision.BLOCKED).get()
    fraud_services.fraud_log_confirm(fraud_log=log, moderator=moderator, reason="1 s rhythm at the ceiling")
    page = logged_in(moderator).get(f"/admin/accounts/user/{cheater.pk}/change/")
    assert page.status_code == 200
    assert b"Banned by <b>mod_alice</b>" in page.content
    assert "“1 s rhythm at the ceiling”".encode() in page.content
    assert f"/admin/fraud/fraudlog/{log.pk}/change/".encode() in page.content


def test_quarantine_hides_the_player_from_the_public_board_and_release_restores(
    quarantined_bot, moderator, api_client, make_player, client_for, mint, django_capture_on_commit_callbacks
):
    """End to end with the board reads (DESIGN "Boards"): hidden while quarantined, back with the score."""
    honest = make_player(username="honest_one")
    assert submit(client_for(honest), mint(honest, increment=500)).status_code == 200
    assert board(api_client) == [("honest_one", 500)]  # the quarantined bot's 3,000 are not shown
    log = FraudLog.objects.filter(user=quarantined_bot, decision=FraudLog.Decision.QUARANTINED).first()
    assert log is not None
    with django_capture_on_commit_callbacks(execute=True):
        fraud_services.player_release(fraud_log=log, moderator=moderator, reason="a known speedrunner")
    assert board(api_client) == [("shadow", 3000), ("honest_one", 500)]
