"""HMAC secrets prepared once per process for every JWT this service signs or verifies.

PyJWT prepares the key again on every ``jwt.decode``/``jwt.encode``: ``HMACAlgorithm.prepare_key``
refuses a secret that is really a PEM, SSH or DER public key or a JWK (the algorithm-confusion
defence), and the DER check alone tries to load the secret as a public key and as a certificate.
A score update verifies two HS256 tokens (the player's access token through simplejwt, the action
token in ``scores.action_tokens``), so that check ran twice per update on the same two secrets;
``bench.profile_update`` put it at 2.1% of the request's CPU time.

``PreparedHMAC`` keeps PyJWT's own ``prepare_key`` (same checks, same errors: a failed check is never
remembered, so a bad key fails every time) and remembers what it returned per secret, at most
``CACHE_SIZE`` secrets (current and previous secrets of each kind in rotation are well within it).
It is registered in PyJWT's module-level registry through the public ``jwt.register_algorithm``,
which ``jwt.decode``/``jwt.encode`` (and so simplejwt) use.

PyJWT 2.15 also checks every character of every segment against the base64url alphabet in a Python
generator (``PyJWS._decode_base64url_segment``, the fix for GHSA-hxm8-2xgr-2p9m): 23.6 us for a
427-character payload, ~50 us per score update (its two tokens). ``segment_decode`` makes the same
checks, in the same order, with the same errors, the alphabet test done by ``bytes.translate`` (C)
instead: 0.4 us. It replaces PyJWT's static method only on the PyJWT release it was written
against (``SEGMENT_DECODE_FOR``) and only while that method is still there; any other release keeps
PyJWT's own check (``install`` logs which). ``tests/scoreboard/test_jwt_keys.py`` holds the two to
the same answers on generated input.
"""

from __future__ import annotations

import binascii
import hashlib
import logging
from typing import Any

import jwt
from jwt import api_jws
from jwt.algorithms import HMACAlgorithm
from jwt.exceptions import DecodeError
from jwt.utils import base64url_decode, base64url_encode, force_bytes

logger = logging.getLogger(__name__)

CACHE_SIZE = 16
# The PyJWT release whose PyJWS._decode_base64url_segment ``segment_decode`` reproduces.
SEGMENT_DECODE_FOR = "2.15.1"
BASE64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_PYJWT_SEGMENT_DECODE = getattr(api_jws.PyJWS, "_decode_base64url_segment", None)
HMAC_ALGORITHMS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


class PreparedHMAC(HMACAlgorithm):
    """PyJWT's HMAC algorithm, each secret prepared (and checked) once."""

    def __init__(self, hash_alg: Any) -> None:
        super().__init__(hash_alg)
        self._prepared: dict[bytes, bytes] = {}

    def prepare_key(self, key: str | bytes) -> bytes:
        key_bytes = force_bytes(key)
        prepared = self._prepared.get(key_bytes)
        if prepared is None:
            prepared = super().prepare_key(key_bytes)  # raises for an asymmetric key or a JWK, every time
            if len(self._prepared) >= CACHE_SIZE:
                self._prepared.clear()
            self._prepared[key_bytes] = prepared
        return prepared


def segment_decode(segment: bytes, name: str) -> bytes:
    """PyJWT 2.15.1's ``PyJWS._decode_base64url_segment``, the alphabet check in C."""
    # Accept trailing '=' (some issuers pad); reject non-alphabet junk and non-canonical encodings.
    stripped = segment.rstrip(b"=")
    padding = len(segment) - len(stripped)
    if padding > 2:
        raise DecodeError(f"Invalid {name} padding")
    if padding and len(segment) % 4 != 0:
        raise DecodeError(f"Invalid {name} padding")
    if len(stripped) % 4 == 1 or stripped.translate(None, BASE64URL_ALPHABET):
        raise DecodeError(f"Invalid {name} padding")
    try:
        decoded = base64url_decode(stripped)
    except (TypeError, binascii.Error) as err:
        raise DecodeError(f"Invalid {name} padding") from err
    if base64url_encode(decoded) != stripped:
        raise DecodeError(f"Invalid {name} padding")
    return decoded


def segment_decode_installable() -> bool:
    """Only on the PyJWT release ``segment_decode`` was written against, with its method in place."""
    return jwt.__version__ == SEGMENT_DECODE_FOR and _PYJWT_SEGMENT_DECODE is not None


def install() -> None:
    """Replace PyJWT's HS256/384/512 in its global registry, and its segment check (idempotent)."""
    for name, hash_alg in HMAC_ALGORITHMS.items():
        jwt.unregister_algorithm(name)
        jwt.register_algorithm(name, PreparedHMAC(hash_alg))
    if segment_decode_installable():
        api_jws.PyJWS._decode_base64url_segment = staticmethod(segment_decode)  # type: ignore[method-assign]
    else:
        logger.info(
            "PyJWT %s: keeping its own segment check (segment_decode is for %s)", jwt.__version__, SEGMENT_DECODE_FOR
        )
