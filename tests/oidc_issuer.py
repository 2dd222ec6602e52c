"""A real, local OIDC-style issuer for tests: keys of each algorithm, a JWKS over HTTP, rotation.

``LocalIssuer`` serves ``/jwks.json`` (and a discovery document) from a thread on 127.0.0.1 and
counts how often the JWKS was fetched, so tests can see the service's cache and refetch rules.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ALGORITHMS = ("RS256", "ES256", "EdDSA")


# Generating an RSA key costs ~0.1-0.5 s; a small pool, handed out round-robin, keeps every test's
# issuer fast. Each key still gets a fresh kid, so a rotation is a rotation for the service.
_POOL_SIZE = 4
_pool: dict[str, list[Any]] = {}
_handed_out: dict[str, itertools.count[int]] = {}


def _new_private_key(alg: str) -> Any:
    keys = _pool.setdefault(alg, [])
    turn = next(_handed_out.setdefault(alg, itertools.count())) % _POOL_SIZE
    if turn >= len(keys):
        keys.append(_generate(alg))
    return keys[turn]


def _generate(alg: str) -> Any:
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(alg)


def _public_jwk(alg: str, private_key: Any, kid: str) -> dict[str, Any]:
    if alg == "RS256":
        jwk = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    elif alg == "ES256":
        jwk = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig", "alg": alg}


@dataclass
class SigningKey:
    alg: str
    kid: str
    private_key: Any


@dataclass
class LocalIssuer:
    audience: str = "my-game"
    keys: dict[str, SigningKey] = field(default_factory=dict)  # alg -> the key that signs now
    published: list[dict[str, Any]] = field(default_factory=list)
    jwks_fetches: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def issuer(self) -> str:
        return self.url + "/"

    @property
    def jwks_url(self) -> str:
        return self.url + "/jwks.json"

    def config(self, **extra: Any) -> dict[str, Any]:
        """This issuer's OIDC_ISSUERS entry."""
        return {"issuer": self.issuer, "audience": self.audience, "jwks_url": self.jwks_url, **extra}

    def rotate(self, alg: str, *, keep_old: bool = False) -> SigningKey:
        """A new signing key for ``alg``; the old one leaves the JWKS unless ``keep_old``."""
        key = SigningKey(alg, f"{alg.lower()}-{uuid.uuid4().hex[:8]}", _new_private_key(alg))
        old = self.keys.get(alg)
        if old is not None and not keep_old:
            self.published = [k for k in self.published if k["kid"] != old.kid]
        self.keys[alg] = key
        self.published.append(_public_jwk(alg, key.private_key, key.kid))
        return key

    def token(
        self, subject: str, *, alg: str = "ES256", key: SigningKey | None = None, lifetime: int = 300, **claims: Any
    ) -> str:
        key = key or self.keys[alg]
        now = int(time.time())
        payload = {"iss": self.issuer, "aud": self.audience, "sub": subject, "iat": now, "exp": now + lifetime}
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, key.private_key, algorithm=key.alg, headers={"kid": key.kid})

    # -- the HTTP side ----------------------------------------------------------------------
    def start(self) -> LocalIssuer:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/jwks.json":
                    issuer.jwks_fetches += 1
                    body = json.dumps({"keys": issuer.published}).encode()
                elif self.path == "/.well-known/openid-configuration":
                    body = json.dumps({"issuer": issuer.issuer, "jwks_uri": issuer.jwks_url}).encode()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        for alg in ALGORITHMS:
            self.rotate(alg)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
