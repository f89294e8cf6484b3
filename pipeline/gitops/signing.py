"""Signed evidence of what the trusted gate saw: this verdict, for this pull request, at
this commit.

The sticky comment is written by a bot identity that every workflow shares, and on
`pull_request` a PR can change its own workflow files: the comment's text proves
nothing by itself. The gate workflow that runs main's code (`gate.yml`, on
`workflow_run`, in the `gate` environment that only the default branch may use) signs
the verdict it computed with an Ed25519 key held only there; promote, in the
`production` environment, holds only the public key and believes nothing else.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ConfigError
from pipeline.gitops.verdict import Verdict

SIGNING_KEY_VARIABLE = "MLOPS_VERDICT_SIGNING_KEY"
"""The private key (base64 of its 32 raw bytes): a secret of the `gate` environment only."""
PUBLIC_KEY_VARIABLE = "MLOPS_VERDICT_PUBLIC_KEY"
"""The public key (base64 of its 32 raw bytes): a variable of the `production` environment."""


@dataclass(frozen=True)
class Evidence:
    """What the trusted gate vouches for."""

    verdict: Verdict
    repository: str
    pr_number: str
    head_sha: str

    def payload(self) -> bytes:
        """The exact bytes that are signed: canonical JSON. The verdict in its compact form
        (`Verdict.compact`: the slice table by its digest), so the comment's hidden token
        stays small however many slices the table has; the rows are in the comment."""
        value = {"repository": self.repository, "pr_number": self.pr_number,
                 "head_sha": self.head_sha, "verdict": self.verdict.compact().to_json()}
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_payload(cls, payload: bytes) -> Evidence:
        value = json.loads(payload)
        if not isinstance(value, dict) or not isinstance(value.get("verdict"), dict):
            raise ValueError("not a signed verdict")
        return cls(verdict=Verdict.from_json(value["verdict"]),
                   repository=str(value["repository"]), pr_number=str(value["pr_number"]),
                   head_sha=str(value["head_sha"]))


def _raw_key(text: str, *, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{what}: not base64") from None
    if len(raw) != 32:
        raise ConfigError(f"{what}: expected a 32-byte Ed25519 key, got {len(raw)} bytes "
                          "(make one with `mlops verdict-key`)")
    return raw


def new_key_pair() -> tuple[str, str]:
    """(private, public), base64: for the `gate` secret and the `production` variable."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(private).decode(), base64.b64encode(public).decode()


def sign(evidence: Evidence, private_key: str) -> str:
    """`payload.signature`, both URL-safe base64: what goes into the hidden marker."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(_raw_key(private_key, what=SIGNING_KEY_VARIABLE))
    payload = evidence.payload()
    return f"{_b64(payload)}.{_b64(key.sign(payload))}"


def verify(token: str, public_key: str) -> Evidence | None:
    """The evidence, if `token` was signed by the key whose public half is given; else None
    (malformed, unsigned, signed by another key, or altered after signing)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = Ed25519PublicKey.from_public_bytes(_raw_key(public_key, what=PUBLIC_KEY_VARIABLE))
    payload_part, dot, signature_part = token.partition(".")
    if not dot:
        return None
    try:
        payload, signature = _unb64(payload_part), _unb64(signature_part)
        key.verify(signature, payload)
        return Evidence.from_payload(payload)
    except (InvalidSignature, ValueError, TypeError, KeyError):
        return None


def public_key_from(env: Mapping[str, str]) -> str | None:
    value = env.get(PUBLIC_KEY_VARIABLE, "").strip()
    if value:
        _raw_key(value, what=PUBLIC_KEY_VARIABLE)  # a typo is an error now, not a refusal later
    return value or None


def signing_key_from(env: Mapping[str, str]) -> str:
    value = env.get(SIGNING_KEY_VARIABLE, "").strip()
    if not value:
        raise ConfigError(f"{SIGNING_KEY_VARIABLE}: not set; the gate workflow signs the "
                          "verdict with the `gate` environment's key (docs/gate.md)")
    _raw_key(value, what=SIGNING_KEY_VARIABLE)
    return value


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    if not text or any(c not in _URLSAFE for c in text):
        raise ValueError("not URL-safe base64")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_URLSAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def describe(evidence: Evidence) -> dict[str, Any]:
    """What promote prints of the evidence it believed."""
    return {"pr": evidence.pr_number, "head_sha": evidence.head_sha[:12],
            "verdict": "pass" if evidence.verdict.passed else "fail"}
