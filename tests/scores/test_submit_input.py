"""The score update's hand-written body check agrees with its DRF serializer.

``submit_input_fast`` may only accept what ``ScoreSubmitApi.InputSerializer`` accepts, with the same
values; everything else (every error) must be left to the serializer, so the error contract is the
serializer's alone.
"""

from __future__ import annotations

from typing import Any

import pytest

from scores.apis import ScoreSubmitApi, submit_input_fast

pytestmark = pytest.mark.embedded

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ.c2ln"

TAKEN = [
    {"action_token": TOKEN},
    {"action_token": TOKEN, "metadata": {}},
    {"action_token": TOKEN, "metadata": {"action_type": "LEVEL_COMPLETION"}},
    {"action_token": TOKEN, "metadata": {"level_id": "w1-3"}},
    {"action_token": TOKEN, "metadata": {"level_id": "w1-3", "action_type": "LEVEL_COMPLETION"}},
    {"action_token": "x" * 1000},
]

LEFT_TO_THE_SERIALIZER = [
    [],
    "token",
    {},
    {"action_token": ""},
    {"action_token": "x" * 1001},
    {"action_token": 123},
    {"action_token": None},
    {"action_token": " " + TOKEN},
    {"action_token": TOKEN + "\x00"},
    {"action_token": "é" + TOKEN},
    {"action_token": TOKEN, "extra": 1},
    {"action_token": TOKEN, "metadata": None},
    {"action_token": TOKEN, "metadata": []},
    {"action_token": TOKEN, "metadata": {"action_type": "NOPE"}},
    {"action_token": TOKEN, "metadata": {"action_type": 1}},
    {"action_token": TOKEN, "metadata": {"level_id": ""}},
    {"action_token": TOKEN, "metadata": {"level_id": " w1 "}},
    {"action_token": TOKEN, "metadata": {"level_id": "x" * 51}},
    {"action_token": TOKEN, "metadata": {"level_id": 7}},
    {"action_token": TOKEN, "metadata": {"other": "x"}},
    {"metadata": {}},
]


def serializer_result(body: Any) -> tuple[str, Any] | None:
    serializer = ScoreSubmitApi.InputSerializer(data=body)
    if not serializer.is_valid():
        return None
    data = serializer.validated_data
    metadata = data.get("metadata")
    return data["action_token"], None if metadata is None else dict(metadata)


@pytest.mark.parametrize("body", TAKEN)
def test_what_the_fast_check_takes_the_serializer_takes_with_the_same_values(body):
    fast = submit_input_fast(body)
    assert fast is not None
    assert fast == serializer_result(body)


@pytest.mark.parametrize("body", LEFT_TO_THE_SERIALIZER)
def test_everything_else_is_left_to_the_serializer(body):
    assert submit_input_fast(body) is None
