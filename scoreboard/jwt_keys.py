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
"""

from __future__ import annotations

import hashlib
from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm
from jwt.utils import force_bytes

CACHE_SIZE = 16
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


def install() -> None:
    """Replace PyJWT's HS256/384/512 in its global registry (idempotent)."""
    for name, hash_alg in HMAC_ALGORITHMS.items():
        jwt.unregister_algorithm(name)
        jwt.register_algorithm(name, PreparedHMAC(hash_alg))
