"""HMAC secrets prepared once per process (scoreboard.jwt_keys), with PyJWT's key checks intact."""

from __future__ import annotations

import hashlib
from typing import Any
from unittest import mock

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st
from jwt import api_jws
from jwt.algorithms import HMACAlgorithm
from jwt.utils import base64url_encode

from scoreboard import jwt_keys
from scoreboard.jwt_keys import CACHE_SIZE, PreparedHMAC

SECRET = "s" * 48


def _pem_public_key() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@given(st.one_of(st.text(min_size=0, max_size=80), st.binary(min_size=0, max_size=80)))
def test_prepared_key_is_what_pyjwt_prepares_or_the_same_refusal(key: str | bytes) -> None:
    plain, prepared = HMACAlgorithm(hashlib.sha256), PreparedHMAC(hashlib.sha256)
    try:
        expected = plain.prepare_key(key)
    except jwt.InvalidKeyError:
        for _ in range(2):  # a refusal is never remembered
            with pytest.raises(jwt.InvalidKeyError):
                prepared.prepare_key(key)
        return
    assert prepared.prepare_key(key) == expected
    assert prepared.prepare_key(key) == expected


def test_an_asymmetric_key_is_refused_every_time() -> None:
    prepared = PreparedHMAC(hashlib.sha256)
    for _ in range(2):
        with pytest.raises(jwt.InvalidKeyError):
            prepared.prepare_key(_pem_public_key())


def test_the_cache_is_bounded() -> None:
    prepared = PreparedHMAC(hashlib.sha256)
    for n in range(CACHE_SIZE * 3):
        prepared.prepare_key(f"{SECRET}-{n}")
    assert len(prepared._prepared) <= CACHE_SIZE


def test_jwt_decode_prepares_each_secret_once_and_still_checks_signatures() -> None:
    # The project's AppConfig installed PreparedHMAC in PyJWT's registry (django.setup() in conftest).
    token = jwt.encode({"sub": "1"}, SECRET, algorithm="HS256")
    with mock.patch.object(HMACAlgorithm, "prepare_key", autospec=True, side_effect=HMACAlgorithm.prepare_key) as spy:
        for _ in range(3):
            assert jwt.decode(token, SECRET + "-fresh", algorithms=["HS256"], options={"verify_signature": False})
            with pytest.raises(jwt.InvalidSignatureError):
                jwt.decode(token, SECRET + "-fresh", algorithms=["HS256"])
    assert spy.call_count == 1
    assert jwt.decode(token, SECRET, algorithms=["HS256"]) == {"sub": "1"}
    with pytest.raises(jwt.InvalidKeyError):
        jwt.decode(token, _pem_public_key(), algorithms=["HS256"])
    unsigned = jwt.encode({"sub": "1"}, "", algorithm="none")
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(unsigned, SECRET, algorithms=["HS256"])


# --- segment_decode: PyJWT's segment check, the alphabet test in C -------------------------------

_SEGMENT_BYTES = st.binary(max_size=40) | st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/!. \x00é", max_size=40
).map(lambda text: text.encode())


def _outcome(decode: Any, segment: bytes) -> tuple[str, bytes | str]:
    try:
        return "ok", decode(segment, "payload")
    except jwt.DecodeError as exc:
        return "error", str(exc)


@given(_SEGMENT_BYTES)
def test_segment_decode_answers_as_pyjwt_does(segment: bytes) -> None:
    assert jwt_keys._PYJWT_SEGMENT_DECODE is not None
    assert _outcome(jwt_keys.segment_decode, segment) == _outcome(jwt_keys._PYJWT_SEGMENT_DECODE, segment)


@given(st.binary(max_size=64))
def test_segment_decode_takes_every_canonical_encoding_back(raw: bytes) -> None:
    encoded = base64url_encode(raw)
    padded = encoded + b"=" * (-len(encoded) % 4)
    assert jwt_keys.segment_decode(encoded, "payload") == raw
    assert jwt_keys.segment_decode(padded, "payload") == raw


def test_the_installed_check_is_segment_decode_and_still_refuses_junk() -> None:
    assert api_jws.PyJWS._decode_base64url_segment is jwt_keys.segment_decode  # installed at start
    token = jwt.encode({"sub": "p"}, SECRET, algorithm="HS256")
    header, payload, signature = token.split(".")
    assert jwt.decode(token, SECRET, algorithms=["HS256"]) == {"sub": "p"}
    junk, over_padded, bad_padding = f"{payload}!", f"{signature}===", f"{payload}="
    for forged in (
        f"{header}.{junk}.{signature}",
        f"{header}.{payload}.{over_padded}",
        f"{header}.{bad_padding}.{signature}",
    ):
        with pytest.raises(jwt.DecodeError):
            jwt.decode(forged, SECRET, algorithms=["HS256"])


def test_another_pyjwt_release_keeps_its_own_check(monkeypatch: pytest.MonkeyPatch) -> None:
    original = jwt_keys._PYJWT_SEGMENT_DECODE
    assert original is not None
    monkeypatch.setattr(api_jws.PyJWS, "_decode_base64url_segment", staticmethod(original))
    monkeypatch.setattr(jwt, "__version__", "2.16.0")
    jwt_keys.install()
    assert api_jws.PyJWS._decode_base64url_segment is original
    monkeypatch.setattr(jwt, "__version__", jwt_keys.SEGMENT_DECODE_FOR)
    jwt_keys.install()
    assert api_jws.PyJWS._decode_base64url_segment is jwt_keys.segment_decode
