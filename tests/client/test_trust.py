"""The trust file fails closed: every malformed or weak configuration is refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from privproc.client.trust import TrustConfigError, load_trust
from privproc.tlog.keys import create_signer
from privproc.wire.checkpoint import generate_cosigner


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "client.toml"
    path.write_text(text)
    return path


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, str]:
    log = create_signer(tmp_path / "log.key", "log.example")
    _, w1 = generate_cosigner("w1.example", b"\x01" * 32)
    _, w2 = generate_cosigner("w2.example", b"\x02" * 32)
    return {"log": log.verifier_key, "w1": w1, "w2": w2}


def good(keys: dict[str, str], **over: str) -> str:
    parts = {
        "service": 'relay = "http://127.0.0.1:1/"',
        "log": f'vkey = "{keys["log"]}"\nwitnesses = ["{keys["w1"]}", "{keys["w2"]}"]\n'
               "quorum = 2",
        "tokens": 'issuer = "http://127.0.0.1:2"\naccount_token = "t"',
    }
    parts.update(over)
    return "".join(f"[{name}]\n{body}\n\n" for name, body in parts.items())


def test_a_good_file_loads_with_documented_defaults(tmp_path: Path,
                                                    keys: dict[str, str]) -> None:
    trust = load_trust(write(tmp_path, good(keys)))
    assert trust.log.quorum == 2 and len(trust.log.witnesses) == 2
    assert trust.gateway_name == "gateway.privproc.local" and trust.max_keys == 2
    assert trust.tokens is not None
    assert trust.tokens.issuer_name == "issuer.privproc.local"
    assert trust.tokens.origin_name == "gateway.privproc.local"
    assert trust.tokens.token_type == 2 and trust.tokens.redemption_context == b""
    text = good(keys, tokens='issuer = "http://127.0.0.1:2"\naccount_token = "t"\n'
                             f'redemption_context = "{"ab" * 32}"')
    named = load_trust(write(tmp_path, text)).tokens
    assert named is not None and named.challenge().redemption_context == b"\xab" * 32
    assert trust.crls == () and not trust.roots.allow_simulated
    assert trust.policy.snp.allow_debug is False and trust.policy.snp.max_vmpl == 0
    assert trust.max_checkpoint_age == 86400
    text = good(keys, log=f'vkey = "{keys["log"]}"\nwitnesses = ["{keys["w1"]}"]\nquorum = 1\n'
                          "max_checkpoint_age = 3600.5")
    assert load_trust(write(tmp_path, text)).max_checkpoint_age == 3600.5


@pytest.mark.parametrize(("log", "message"), [
    ('vkey = "{log}"\nwitnesses = ["{w1}"]', "quorum must be an integer from 1 to the 1"),
    ('vkey = "{log}"\nwitnesses = ["{w1}"]\nquorum = 0', "quorum must be an integer from 1"),
    ('vkey = "{log}"\nwitnesses = ["{w1}"]\nquorum = 2', "quorum must be an integer from 1"),
    ('vkey = "{log}"\nwitnesses = ["{w1}"]\nquorum = true', "quorum must be an integer"),
    ('vkey = "{log}"\nquorum = 1', "witnesses must list at least one"),
    ('vkey = "{log}"\nwitnesses = []\nquorum = 1', "witnesses must list at least one"),
    ('vkey = "{log}"\nwitnesses = "abc"\nquorum = 1', "witnesses must list at least one"),
    ('vkey = "{log}"\nwitnesses = ["abc"]\nquorum = 1', r"\[log\]"),
    ('vkey = "{log}"[:-5]\nwitnesses = ["{w1}"]\nquorum = 1', "not valid TOML"),
    ('witnesses = ["{w1}"]\nquorum = 1', "vkey is required"),
    ('vkey = "{log}"\nwitnesses = ["{w1}"]\nquorum = 1\nmax_keys = 0', "max_keys"),
    ('vkey = "{log}"\nwitnesses = ["{w1}"]\nquorum = 1\nfoo = 1', "unknown key"),
    *((f'vkey = "{{log}}"\nwitnesses = ["{{w1}}"]\nquorum = 1\nmax_checkpoint_age = {bad}',
       r"\[log\] max_checkpoint_age must be a positive number of seconds")
      for bad in ("0", "-5", "true", '"1d"', "inf", "nan")),
])
def test_weak_or_malformed_log_trust_is_refused(tmp_path: Path, keys: dict[str, str],
                                                log: str, message: str) -> None:
    text = good(keys, log=log.format(**keys))
    with pytest.raises(TrustConfigError, match=message):
        load_trust(write(tmp_path, text))


@pytest.mark.parametrize(("table", "body", "message"), [
    ("service", 'relay = 5', "relay must be a non-empty string"),
    ("service", 'relay = "ftp://x"', "relay must be an http"),
    ("service", "", "relay is required"),
    ("tokens", 'issuer = "http://i"\naccount_token = "t"\ntoken_type = 3', "token_type"),
    ("tokens", 'issuer = "http://i"', "account_token is required"),
    ("tokens", 'issuer = "http://i"\naccount_token = "t"\nredemption_context = "zz"',
     "redemption_context must be hex"),
    ("tokens", 'issuer = "http://i"\naccount_token = "t"\nredemption_context = "00ff"',
     "redemption_context must be 32 bytes"),
    ("tokens", 'issuer = "http://i"\naccount_token = "t"\nredemption_context = 5',
     "redemption_context must be a string"),
    ("attestation", "allow_simulated = 1", "allow_simulated must be true or false"),
    ("attestation", "allow_simulated = true", "simulated_roots is required"),
    ("attestation", 'crl = ["missing.der"]', "crl missing.der"),
    ("policy", "max_vmpl = 9", "max_vmpl"),
])
def test_other_tables_are_checked(tmp_path: Path, keys: dict[str, str], table: str,
                                  body: str, message: str) -> None:
    with pytest.raises(TrustConfigError, match=message):
        load_trust(write(tmp_path, good(keys, **{table: body})))


def test_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(TrustConfigError, match="No such file"):
        load_trust(tmp_path / "missing.toml")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"[service]\nrelay = \"\xe9\"\n")
    with pytest.raises(TrustConfigError, match="not UTF-8"):
        load_trust(bad)
    with pytest.raises(TrustConfigError, match="unknown table"):
        load_trust(write(tmp_path, "[nope]\n"))
