"""HMAC secrets prepared once per process (scoreboard.jwt_keys), with PyJWT's key checks intact."""

from __future__ import annotations

import hashlib
from unittest import mock

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st
from jwt.algorithms import HMACAlgorithm

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
