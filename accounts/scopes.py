"""What a player's token carries: its scopes and the session epoch claim.

A module of its own so that the services (which issue tokens) and the authentication (which checks
them) share these names without importing each other.
"""

from __future__ import annotations

SCOPE_READ = "read:scores"
SCOPE_UPDATE = "update:scores"
PLAYER_SCOPES = (SCOPE_READ, SCOPE_UPDATE)
# Every token carries the epoch it was issued under; raising User.token_epoch revokes older tokens.
EPOCH_CLAIM = "epoch"
