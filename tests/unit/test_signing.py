"""Signed verdicts: what verifies, and everything that does not."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest

from pipeline.errors import ConfigError
from pipeline.gitops import signing
from pipeline.gitops.signing import Evidence
from tests.unit.test_report_escaping import _genuine

PRIVATE, PUBLIC = signing.new_key_pair()
OTHER_PRIVATE, OTHER_PUBLIC = signing.new_key_pair()


def _evidence(**changes: str) -> Evidence:
    return replace(Evidence(verdict=_genuine(), repository="o/r", pr_number="7",
                            head_sha="a" * 40), **changes)


def test_a_signed_verdict_verifies_with_the_public_key() -> None:
    token = signing.sign(_evidence(), PRIVATE)
    assert signing.verify(token, PUBLIC) == _evidence()


def test_another_key_s_signature_is_not_believed() -> None:
    assert signing.verify(signing.sign(_evidence(), OTHER_PRIVATE), PUBLIC) is None


def _flipped(part: str) -> str:
    """The signature with one bit of its first byte flipped. Editing the text's last
    characters is not enough: they may only hold padding bits that decoding ignores."""
    raw = bytearray(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    raw[0] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


@pytest.mark.parametrize("tamper", ["payload", "signature", "unsigned", "garbage", "empty"])
def test_an_altered_or_unsigned_token_is_not_believed(tamper: str) -> None:
    token = signing.sign(_evidence(), PRIVATE)
    payload, signature = token.split(".")
    forged = signing.sign(_evidence(pr_number="8"), OTHER_PRIVATE).split(".")[0]
    altered = {"payload": f"{forged}.{signature}", "signature": f"{payload}.{_flipped(signature)}",
               "unsigned": payload, "garbage": "not.base64!", "empty": ""}[tamper]
    assert signing.verify(altered, PUBLIC) is None


@pytest.mark.parametrize(("value", "message"), [
    ("", "MLOPS_VERDICT_SIGNING_KEY: not set"),
    ("not base64 at all!", "MLOPS_VERDICT_SIGNING_KEY: not base64"),
    ("AAAA", "MLOPS_VERDICT_SIGNING_KEY: expected a 32-byte Ed25519 key, got 3 bytes"),
])
def test_a_missing_or_malformed_signing_key_is_one_line(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        signing.signing_key_from({"MLOPS_VERDICT_SIGNING_KEY": value})


def test_the_public_key_is_checked_when_read() -> None:
    assert signing.public_key_from({}) is None
    assert signing.public_key_from({"MLOPS_VERDICT_PUBLIC_KEY": PUBLIC}) == PUBLIC
    with pytest.raises(ConfigError, match="MLOPS_VERDICT_PUBLIC_KEY: expected a 32-byte"):
        signing.public_key_from({"MLOPS_VERDICT_PUBLIC_KEY": "AAAA"})
