"""A player's erasure on request (GDPR), across the apps that hold their data: the account
(accounts), their history and fraud logs (scores, fraud, through their retention services) and
every board (scores.services). Audited in ``accounts.AccountDeletion``."""

from __future__ import annotations

import logging

from django.db import transaction
from rest_framework.exceptions import NotFound, ValidationError

from accounts import services as account_services
from accounts.models import AccountDeletion, ExternalIdentity, User
from fraud.retention import player_fraud_logs_personal_data_clear
from scoreboard.errors import Conflict
from scores import services as score_services
from scores.retention import player_history_personal_data_clear

logger = logging.getLogger(__name__)

DELETED_EMAIL_DOMAIN = "deleted.invalid"


def player_delete(*, user_id: str, requested_by: str, reason: str) -> AccountDeletion:
    """Erase a player on request (GDPR): anonymise the account, clear their addresses and user
    agents everywhere, unlink their identity providers, end their sessions, take them off every
    board, and record who asked and why. One transaction; the board and the sockets follow on commit.

    The row stays (anonymised, disabled, no usable password): score history points at it and keeps
    the board's arithmetic auditable. 409 if the player was already deleted.
    """
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": ["A reason is required."]})
    with transaction.atomic():
        user = User.objects.select_for_update().filter(pk=user_id).first()
        if user is None:
            raise NotFound("No such player.", code="player_not_found")
        if AccountDeletion.objects.filter(user_id=user.pk).exists():
            raise Conflict("This player was already deleted.", code="player_already_deleted")
        anonymous = f"deleted-{user.pk.hex[:12]}"
        user.username, user.email = anonymous, f"{anonymous}@{DELETED_EMAIL_DOMAIN}"
        user.first_name = user.last_name = ""
        user.is_active = user.is_staff = user.is_superuser = False
        user.set_unusable_password()  # raises the token epoch: every session ends
        user.save()
        user.groups.clear()
        user.user_permissions.clear()
        details = {
            "score_history_rows_cleared": player_history_personal_data_clear(user_id=user.pk),
            "fraud_logs_cleared": player_fraud_logs_personal_data_clear(user_id=user.pk),
            "external_identities_removed": ExternalIdentity.objects.filter(user=user).delete()[0],
        }
        audit = AccountDeletion.objects.create(
            user_id=user.pk, requested_by=requested_by, reason=reason[:2000], details=details
        )
        # Off every board (the index drops a disabled player) and the live pages follow.
        score_services.player_standing_changed(user_id=str(user.pk))
        transaction.on_commit(lambda: account_services.sockets_close(str(user.pk)))
    logger.info("player %s deleted on request by %s", user.pk, requested_by)
    return audit
