"""The score update's fast paths answer as DRF would: orjson bodies, orjson answers, JSON-only negotiation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import RequestFactory
from hypothesis import given
from hypothesis import strategies as st
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request

from scoreboard.api import JSON_ONLY_ACCEPTS, json_body_fast, ok_json
from scores.apis import submit_input_fast

pytestmark = pytest.mark.embedded

# What a score update's answer holds: JSON's own types (no floats), 64-bit integers, any text
# without lone surrogates (neither renderer can write those as UTF-8).
_TEXT = st.text(st.characters(codec="utf-8"), max_size=20)
_JSON_NATIVE = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(_TEXT, _JSON_NATIVE, max_size=6))
def test_ok_json_writes_the_bytes_drf_writes(data: dict[str, Any]) -> None:
    assert ok_json(data).content == JSONRenderer().render({"success": True, "data": data})


def _drf_parse(body: bytes, content_type: str) -> Any:
    request = Request(
        RequestFactory().post("/v1/scores/update", body, content_type=content_type), parsers=[JSONParser()]
    )
    try:
        return request.data
    except Exception:  # DRF's error, answered by DRF on the slow path
        return "refused"


_BODY_VALUES = st.one_of(
    _TEXT,
    st.integers(),
    st.floats(allow_nan=False),
    st.none(),
    st.booleans(),
    st.dictionaries(st.sampled_from(["action_type", "level_id", "x"]), _TEXT | st.integers(), max_size=3),
)


@given(st.dictionaries(st.sampled_from(["action_token", "metadata", "extra"]), _BODY_VALUES, max_size=3))
def test_an_update_body_read_by_orjson_is_taken_as_drf_would_take_it(body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    request = RequestFactory().post("/v1/scores/update", raw, content_type="application/json")
    fast = json_body_fast(request)
    drf = _drf_parse(raw, "application/json")
    if fast is None:  # orjson refused it (Infinity, say): DRF's path, as before
        return
    assert (fast == drf) or not submit_input_fast(fast)
    # Whatever the hand check takes from orjson's reading, it takes the same from DRF's.
    taken = submit_input_fast(fast)
    if taken is not None:
        assert taken == submit_input_fast(drf)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"action_token": "t"', "application/json"),  # broken JSON: DRF's 400
        (b'{"action_token": "\\ud800"}', "application/json"),  # a lone surrogate: orjson refuses
        (b'{"action_token": "t"}', "text/plain"),  # DRF's 415
        (b'{"action_token": "t"}', "application/json; charset=latin-1"),
    ],
)
def test_anything_unusual_is_left_to_drf(body: bytes, content_type: str) -> None:
    assert json_body_fast(RequestFactory().post("/v1/scores/update", body, content_type=content_type)) is None


@pytest.mark.django_db
@pytest.mark.parametrize("accept", sorted(JSON_ONLY_ACCEPTS))
def test_a_client_that_accepts_json_gets_json(client: Any, accept: str) -> None:
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    response = client.post("/v1/scores/update", {}, content_type="application/json", **headers)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.json()["success"] is False


@pytest.mark.django_db
def test_another_accept_header_is_still_negotiated_by_drf(client: Any) -> None:
    response = client.post("/v1/scores/update", {}, content_type="application/json", HTTP_ACCEPT="text/csv")
    assert response.status_code == 406
