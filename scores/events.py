"""What the score app tells the rest of the service, without importing it.

The update path is: api → ``scores.services.score_submit`` → one transaction → after the commit,
one :class:`ScoreApplied` event per board written. The index is written by the score service
itself; the live layer (``realtime``) and the fraud engine's follow-up subscribe here in their
``AppConfig.ready()``. The fraud engine's pre-write assessment is registered the same way, so
``scores`` never imports ``fraud`` or ``realtime`` (they import ``scores``), and no import cycle
exists between the apps.

Subscribers run after the commit: the score is already true, so a subscriber that fails is logged
and never changes the player's answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from accounts.models import User
    from scores.action_tokens import ActionClaims
    from scores.boards import BoardSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreApplied:
    """A committed change of one player's standing on one board's period."""

    board: BoardSpec
    period: str
    user_id: str
    score: int
    old_rank: int | None
    new_rank: int | None
    hidden: bool = False  # quarantined: not on public boards
    # The live layer's step already ran with the index write, in the same Redis call
    # (``LiveScript``): the subscriber must not publish this change again.
    published: bool = False


@dataclass(frozen=True)
class SubmissionApplied:
    """A committed submission (once per update, whatever the number of boards)."""

    user: User
    claims: ActionClaims
    context: Any
    assessment: Any
    history_id: str


@dataclass(frozen=True)
class BoardCorrected:
    """A moderator correction (reversal, ban, release) or an index repair changed a board's period."""

    board: BoardSpec
    period: str
    # An index repair after a Redis outage: a publisher that died in the outage may still hold the
    # board's publish lock, so the live layer publishes whoever holds it.
    repair: bool = False


class Assessor(Protocol):
    def __call__(
        self, *, user: User, claims: ActionClaims, context: Any, once_keys: tuple[str, ...], once_ttl: int
    ) -> Any: ...


class LiveScript(Protocol):
    """The live layer's after-write step, run by the score service inside each board's index
    script (``scores.ranking.apply_then``), so that an update's index writes, rank changes and
    publishes are one Redis round trip.

    ``lua`` defines ``local function live(IK, LK, LA, old_rank, new_rank, built)`` returning an
    integer: negative when the step could not run there and the ``ScoreApplied`` subscriber must do
    it the usual way (the event's ``published`` is then False)."""

    lua: str

    def keys(self, board: BoardSpec) -> list[str]: ...

    def args(self, *, board: BoardSpec, period: str, user_id: str, score: int, hidden: bool) -> list[str | int]: ...


class _NoAssessment:
    """What an update gets when no fraud engine is installed: allowed, never a repeat."""

    repeat = False
    flagged = False
    blocked = False


def _allow_all(**_: Any) -> Any:
    return _NoAssessment()


class _Bus:
    def __init__(self) -> None:
        self.assessor: Assessor = _allow_all
        self.score_applied: list[Callable[[ScoreApplied], None]] = []
        self.submission_applied: list[Callable[[SubmissionApplied], None]] = []
        self.board_corrected: list[Callable[[BoardCorrected], None]] = []
        self.token_rejected: list[Callable[..., None]] = []
        self.live_script: LiveScript | None = None


bus = _Bus()


def _add(handlers: list[Callable[..., None]], handler: Callable[..., None]) -> None:
    if handler not in handlers:  # ready() may run more than once (tests, autoreload)
        handlers.append(handler)


def set_assessor(assessor: Assessor) -> None:
    bus.assessor = assessor


def set_live_script(script: LiveScript | None) -> None:
    bus.live_script = script


def on_score_applied(handler: Callable[[ScoreApplied], None]) -> None:
    _add(bus.score_applied, handler)


def on_submission_applied(handler: Callable[[SubmissionApplied], None]) -> None:
    _add(bus.submission_applied, handler)


def on_board_corrected(handler: Callable[[BoardCorrected], None]) -> None:
    _add(bus.board_corrected, handler)


def on_token_rejected(handler: Callable[..., None]) -> None:
    """``handler(user=..., context=..., code=...)`` for every refused action token."""
    _add(bus.token_rejected, handler)


def _emit(handlers: list[Callable[..., None]], *args: Any, **kwargs: Any) -> None:
    for handler in handlers:
        try:
            handler(*args, **kwargs)
        except Exception:  # after the commit: never change the answer
            logger.exception("score event handler %s failed", getattr(handler, "__qualname__", handler))


def emit_score_applied(event: ScoreApplied) -> None:
    _emit(bus.score_applied, event)


def emit_submission_applied(event: SubmissionApplied) -> None:
    _emit(bus.submission_applied, event)


def emit_board_corrected(event: BoardCorrected) -> None:
    _emit(bus.board_corrected, event)


def emit_token_rejected(*, user: Any, context: Any, code: str) -> None:
    _emit(bus.token_rejected, user=user, context=context, code=code)
