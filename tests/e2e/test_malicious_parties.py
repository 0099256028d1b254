"""A malicious relay, issuer, operator or log against real processes on loopback.

Each test is one attack from issue 10 and fails if the guarantee it checks breaks:
keys the client uses must be logged, the request path touches only the relay, the trust
file fails closed, revoked releases are refused, receipts prove what they say.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from privproc.client.errors import (
    KeyDowngradeError,
    KeyNotLoggedError,
    LogVerificationError,
    ReleaseRevokedError,
    StaleLogError,
    TokenChallengeRefusedError,
    TooManyKeysError,
)
from privproc.client.receipt import ReceiptError, verify_receipt
from privproc.client.sdk import PrivateProcessingClient
from privproc.client.tokens import TokenWallet
from privproc.client.trust import ClientTrust, TrustConfigError, load_trust
from privproc.relay.app import RelayConfig
from privproc.relay.app import create_app as create_relay
from privproc.tlog.bundle import LogBundle
from privproc.tlog.keys import read_signer
from privproc.tlog.publish import publish
from privproc.tlog.record import (
    PURPOSE_OHTTP_GATEWAY,
    KeyRecord,
    ReleaseRecord,
    decode_entry,
    privacypass_purpose,
)
from privproc.up.system import (
    ISSUER_NAME,
    System,
    _wait_for_size,
    node_args,
    node_id_from_log,
)
from privproc.wire import hpke, ohttp

from ..servers import ANY_PORT, serving, start_service
from .conftest import up_system
from .evil import EvilRelay

pytestmark = pytest.mark.slow
CHAT = [{"sender": "Ana", "time": "2026-01-01T10:00", "text": "lunch at noon?"}]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    yield from up_system(tmp_path_factory, nodes=1)


@pytest.fixture(scope="module")
def fresh_relay(system: System) -> Iterator[str]:
    """A second relay to the same gateway and log, in this process, that caches nothing:
    a client syncing through it sees the log as it is now, not a checkpoint a few seconds
    old (the system's relay caches it; tests/relay checks that caching)."""
    config = RelayConfig(gateway=system.urls["gateway"] + "/gateway", log=system.urls["log"],
                         checkpoint_cache_seconds=0, keys_cache_seconds=0)
    with serving(create_relay(config)) as url:
        yield url + "/"


def fresh(system: System, relay: str) -> ClientTrust:
    return replace(load_trust(system.client_config), relay_url=relay)


def make_client(system: System, trust: ClientTrust | None = None,
                batch: int = 4) -> PrivateProcessingClient:
    trust = trust or load_trust(system.client_config)
    assert trust.tokens is not None
    wallet = TokenWallet(trust.tokens.issuer_url, trust.tokens.account_token, None,
                         batch=batch, token_type=trust.tokens.token_type)
    return PrivateProcessingClient(trust, tokens=wallet)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "privproc.cli", *args], check=False,
                          capture_output=True, text=True, timeout=120)


def log_size(system: System) -> int:
    c = make_client(system)
    return c.view.sync().checkpoint.size


# -- 1. a relay that swaps the gateway key -------------------------------------------------


@pytest.mark.parametrize("mode", ["unlogged", "swapped"])
def test_1_relay_serving_its_own_gateway_key_gets_nothing(system: System, mode: str) -> None:
    trust = load_trust(system.client_config)
    evil = EvilRelay(trust.relay_url, trust.gateway_name, mode)
    try:
        client = make_client(system, replace(trust, relay_url=evil.url))
        with pytest.raises((KeyNotLoggedError, LogVerificationError)):
            client.summarize(CHAT)
        assert evil.posts == 0  # no token, no sealed inner request ever reached it
    finally:
        evil.close()


def test_1_relay_advertising_its_key_at_ohttp_keys_opens_nothing(system: System) -> None:
    trust = load_trust(system.client_config)
    evil = EvilRelay(trust.relay_url, trust.gateway_name, "keys-only")
    try:
        client = make_client(system, replace(trust, relay_url=evil.url))
        assert client.summarize(CHAT).output == ["1 messages"]
        assert evil.posts >= 1  # it carried the requests ...
        assert evil.opened == []  # ... and could open none: they are sealed to the logged key
    finally:
        evil.close()


# -- 2. an issuer that tags one client with a key of its own -------------------------------


def test_2_issuer_key_that_is_not_logged_is_refused(system: System, tmp_path: Path) -> None:
    trust = load_trust(system.client_config)
    assert trust.tokens is not None
    evil_url = start_service(system.sup, "evil-issuer", [
        "issuer", "serve", "--listen", ANY_PORT, "--state", str(tmp_path / "evil"),
        # one word with its option: a random token may start with "-"
        f"--static-account={trust.tokens.account_token}=demo-user", "--name", ISSUER_NAME
    ]).url
    try:
        tagged = replace(trust, tokens=replace(trust.tokens, issuer_url=evil_url))
        client = make_client(system, tagged)
        with pytest.raises(KeyNotLoggedError, match="no key record"):
            client.refresh()
        with pytest.raises(KeyNotLoggedError):
            client.summarize(CHAT)
        assert "issued:" not in system.sup.services["evil-issuer"].log_text()
    finally:
        system.sup.stop("evil-issuer")


# -- 3. the request path touches the relay alone --------------------------------------------


@contextlib.contextmanager
def connections() -> Iterator[list[tuple[str, int]]]:
    """Every TCP connection this process opens inside the block, as (host, port)."""
    seen: list[tuple[str, int]] = []
    real_connect = socket.socket.connect

    def spy(sock: socket.socket, address: Any) -> None:
        seen.append(tuple(address[:2]))  # type: ignore[arg-type]
        real_connect(sock, address)

    socket.socket.connect = spy  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]


def relay_port(client: PrivateProcessingClient) -> int:
    return int(client.relay_url.rsplit(":", 1)[1].strip("/"))


def test_3_a_summary_opens_connections_to_the_relay_only(system: System) -> None:
    client = make_client(system)
    client.refresh()  # what start() and the background do: log sync, keys, token refill
    client.ohttp.close()  # no kept-alive connection: the calls must open theirs
    with connections() as seen:
        assert client.summarize(CHAT).output == ["1 messages"]
        assert client.write("see you at noon", "funny").output == ["15 characters"]
    assert seen, "the spy saw no connection at all"
    assert {port for _, port in seen} == {relay_port(client)}, seen


def test_3_refresh_without_tokens_reaches_only_the_relay(system: System) -> None:
    client = make_client(system)
    with connections() as seen:
        client.refresh(tokens=False)
    assert seen and {port for _, port in seen} == {relay_port(client)}


# -- 4. a trust file that would accept a log alone ------------------------------------------


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace("quorum = 1", "quorum = 0"), "quorum must be an integer from 1"),
    (lambda t: t.replace("quorum = 1\n", ""), "quorum must be an integer from 1"),
    (lambda t: "\n".join(ln for ln in t.splitlines() if not ln.startswith("witnesses")),
     "witnesses must list at least one"),
    (lambda t: re.sub(r"witnesses = \[.*\]", "witnesses = []", t), "witnesses must list"),
])
def test_4_trust_file_without_witness_quorum_is_refused(
        system: System, tmp_path: Path, edit: object, message: str) -> None:
    text = system.client_config.read_text()
    bad = tmp_path / "client.toml"
    bad.write_text(edit(text))  # type: ignore[operator]
    (tmp_path / "node").symlink_to(system.state / "node")
    with pytest.raises(TrustConfigError, match=message):
        load_trust(bad)
    chat = Path(__file__).parents[1] / "data" / "sample_chat.txt"
    done = cli("summarize", str(chat), "--trust", str(bad))
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr


# -- 5. a revoked release -------------------------------------------------------------------


def test_5_revoked_release_is_refused(system: System, fresh_relay: str, tmp_path: Path
                                      ) -> None:
    config = tmp_path / "node.toml"
    config.write_text("release = 'to be revoked'\n")
    service = start_service(system.sup, "doomed", node_args(
        system.state, f"http://{ANY_PORT}", system.urls["gateway"], "echo", config),
        timeout=120)
    url = service.url
    doomed = node_id_from_log(service.log_text())
    try:
        measurement = bytes.fromhex(next(
            ln.split(": ", 1)[1] for ln in service.log_text().splitlines()
            if ln.startswith("node measurement: ")))
        publisher = read_signer(system.state / "publisher.key")
        record = ReleaseRecord(measurement, hashlib.sha256(b"").digest(), "0.2.0", "local",
                               int(time.time()))
        index = publish(system.urls["log"], publisher, record.encode())
        _wait_for_size(system.urls["log"], index + 1)
        client = make_client(system, fresh(system, fresh_relay))
        client.refresh(tokens=False)
        deadline = time.monotonic() + 30  # the node is listed once it has registered
        while doomed not in dict(client.candidates().nodes) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert doomed in {n.node_id for n in client.verified_nodes()}

        done = cli("release", "revoke", "--log", system.urls["log"], "--key",
                   str(system.state / "publisher.key"), "--measurement", measurement.hex(),
                   "--reason", "CVE-2026-0001")
        assert done.returncode == 0, done.stderr
        _wait_for_size(system.urls["log"], index + 2)
        # The next background sync sees the revocation.
        client.refresh(tokens=False)
        assert client.view.size >= index + 2
        assert doomed not in {n.node_id for n in client._nodes()}
        offered = client.candidates()
        with urllib.request.urlopen(url + "/evidence", timeout=10) as resp:
            bundle = resp.read()
        with pytest.raises(ReleaseRevokedError, match="CVE-2026-0001"):
            client.verify_node(doomed, bundle, offered.releases)
        assert doomed not in {n.node_id for n in client.verified_nodes()}
        # A fresh client learns of it from its first sync.
        newcomer = make_client(system, fresh(system, fresh_relay))
        newcomer.refresh(tokens=False)
        assert newcomer.view.size >= index + 2
        assert doomed not in {n.node_id for n in newcomer.verified_nodes()}
    finally:
        system.sup.stop("doomed")


# -- 6. an edited receipt -------------------------------------------------------------------


def test_6_edited_receipt_fields_fail_and_are_named(system: System, tmp_path: Path) -> None:
    trust = load_trust(system.client_config)
    receipt = json.loads(make_client(system).summarize(CHAT).receipt.to_json())
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(receipt))
    done = cli("receipt", "verify", str(path), "--trust", str(system.client_config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "receipt OK" in done.stdout
    assert "NOT CHECKED time" in done.stdout  # reported, never vouched for
    assert "verified    node_id" in done.stdout  # derived from the attested key

    def edited(field: str, value: object) -> dict[str, object]:
        doc = json.loads(json.dumps(receipt))
        if "." in field:
            outer, inner = field.split(".")
            doc[outer][inner] = value
        else:
            doc[field] = value
        return doc

    flipped = bytearray(__import__("base64").b64decode(receipt["evidence"]))
    flipped[200] ^= 1
    cases = {
        "node_key": edited("node_key", "00" * 32),
        "node_id": edited("node_id", "n" + "0" * 31),
        "evidence_digest": edited("evidence_digest", "11" * 32),
        "measurement": edited("measurement", "22" * 48),
        "time": edited("time", "2099-01-01T00:00:00Z"),
        "evidence": edited("evidence", __import__("base64").b64encode(flipped).decode()),
        "release": edited("release.record", receipt["release"]["record"].replace(
            "version 0.1.0", "version 6.6.6")),
        "gateway_key": edited("gateway_key.index", receipt["gateway_key"]["index"] + 1),
    }
    for field, doc in cases.items():
        with pytest.raises(ReceiptError) as err:
            verify_receipt(doc, trust)
        assert err.value.field == field, (field, str(err.value))
    path.write_text(json.dumps(cases["measurement"]))
    done = cli("receipt", "verify", str(path), "--trust", str(system.client_config))
    assert done.returncode == 1
    assert "REFUSED: field measurement" in done.stdout


# -- 2b. surplus issuer keys (last: it leaves the system with too many type-1 keys) --------


def test_2_surplus_logged_issuer_keys_are_flagged_and_refused(system: System,
                                                              fresh_relay: str) -> None:
    trust = fresh(system, fresh_relay)
    assert trust.tokens is not None
    issuer_publisher = read_signer(system.state / "issuer-publisher.key")
    now = int(time.time())
    purpose = privacypass_purpose(1)
    index = 0
    for _ in range(2):  # with the issuer's own key: three type-1 keys valid at once
        record = KeyRecord(purpose, ISSUER_NAME, b"\x02" + os.urandom(48), now - 10,
                           now + 86400)
        index = publish(system.urls["log"], issuer_publisher, record.encode())
    _wait_for_size(system.urls["log"], index + 1)
    log_vkey = trust.log.log_verifier.verifier_key
    witness_vkey = (system.state / "witness" / "witness.vkey").read_text().strip()
    done = cli("audit", "--log", system.urls["log"], "--vkey", log_vkey, "--witness-vkey",
               witness_vkey, "--quorum", "1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "SURPLUS KEYS" in done.stdout and purpose in done.stdout
    voprf = make_client(system, replace(trust, tokens=replace(trust.tokens, token_type=1)))
    assert voprf.view.sync().checkpoint.size > index
    with pytest.raises(TooManyKeysError):
        voprf.refresh()
    # Type-2 keys are not in surplus: those clients carry on.
    assert make_client(system, trust).summarize(CHAT).output == ["1 messages"]


# -- 7. a relay that downgrades clients to a classical key (harvest now, decrypt later) ----


def test_7_relay_serving_a_bundle_with_only_a_classical_key_gets_nothing(
        system: System) -> None:
    """The gateway's hybrid key is logged and a classical key of it is also still valid
    (as after an upgrade, for up to the key lifetime). A relay that records traffic for a
    future quantum computer serves a genuine bundle of the classical record alone, asked
    of the log. The client's copy of the log knows the hybrid key: it refuses and sends
    nothing. (Near the end of this module: it logs a second valid gateway key.)"""
    trust = load_trust(system.client_config)
    classic = ohttp.GatewayKey.create(7, hpke.KeyPair.generate(kem_id=hpke.KEM_X25519_SHA256))
    now = int(time.time())
    record = KeyRecord(PURPOSE_OHTTP_GATEWAY, trust.gateway_name, classic.config.encode(),
                       now - 10, now + 3600)
    gateway_publisher = read_signer(system.state / "gateway-publisher.key")
    index = publish(system.urls["log"], gateway_publisher, record.encode())
    _wait_for_size(system.urls["log"], index + 1)
    # the issuer's key records as the honest bundle has them, the classical gateway key
    # instead of the hybrid one: every proof genuine, asked of the log
    with urllib.request.urlopen(trust.relay_url + "privproc/keys", timeout=10) as resp:
        honest = LogBundle.decode(resp.read())
    subjects = [record.subject] + [
        r.subject for r in (decode_entry(e.record) for e in honest.entries)
        if isinstance(r, KeyRecord) and r.purpose != PURPOSE_OHTTP_GATEWAY]
    query = "&".join(f"subject={s.hex()}" for s in subjects)
    with urllib.request.urlopen(f"{system.urls['log']}/proofs?{query}", timeout=10) as resp:
        genuine = resp.read()
    evil = EvilRelay(trust.relay_url, trust.gateway_name, "replay", bundle=genuine)
    try:
        # require_pq = false (the trust file's default; up writes true): the preference
        # for the hybrid key is all that stands between the client and the classical one
        client = make_client(system, replace(trust, relay_url=evil.url, require_pq=False))
        with pytest.raises(KeyDowngradeError, match=r"\(key_id 7 X25519\), but the log holds "
                                                    r"a valid post-quantum key"):
            client.summarize(CHAT)
        assert evil.posts == 0  # nothing sealed to the classical key went out, no token
    finally:
        evil.close()
    # through the honest relay the same client state picks the hybrid key
    assert make_client(system).summarize(CHAT).output == ["1 messages"]


# -- 8. a relay that freezes the client's view of the log ----------------------------------


def test_8_relay_replaying_an_old_bundle_is_refused_past_max_checkpoint_age(
        system: System) -> None:
    """A relay that keeps serving the key bundle of a moment it chose (genuine, and
    consistent with every later checkpoint) would keep every later revocation and key
    from its clients. Past ``max_checkpoint_age`` after its witnesses cosigned it, the
    client refuses it and sends nothing: a new client, and one that verified the bundle
    while it was fresh and kept it (the client's clock runs two hours on here)."""
    trust = replace(load_trust(system.client_config), max_checkpoint_age=3600.0)
    with urllib.request.urlopen(trust.relay_url + "privproc/keys", timeout=10) as resp:
        frozen = resp.read()
    evil = EvilRelay(trust.relay_url, trust.gateway_name, "replay", bundle=frozen)
    try:
        assert trust.tokens is not None
        clock = [0.0]  # added to the real time

        def client() -> PrivateProcessingClient:
            assert trust.tokens is not None
            wallet = TokenWallet(trust.tokens.issuer_url, trust.tokens.account_token, None,
                                 batch=4, token_type=trust.tokens.token_type)
            return PrivateProcessingClient(replace(trust, relay_url=evil.url), tokens=wallet,
                                           clock=lambda: time.time() + clock[0])

        kept = client()
        assert kept.summarize(CHAT).output == ["1 messages"]  # the bundle is fresh now
        posts = evil.posts
        clock[0] = 7200
        for late in (client(), kept):
            with pytest.raises(StaleLogError, match=r"last cosigned by a quorum of witnesses "
                                                    r"\d+ s ago .*at most 3600 s is accepted"):
                late.summarize(CHAT)
        assert evil.posts == posts  # nothing more went out
    finally:
        evil.close()


def test_9_a_gateway_asking_under_a_challenge_of_its_own_gets_no_token(
        system: System) -> None:
    """The gateway answers 401 with a token challenge the client's trust file does not
    name (here: the trust file names another origin, so the real gateway's own challenge
    is foreign to this client, as a random redemption context made for one client would
    be). Adopted, it would tag every later token of this client and make its wallet fetch
    from the issuer inside the request; the client refuses it and takes no token under
    it."""
    trust = load_trust(system.client_config)
    assert trust.tokens is not None
    pinned = replace(trust.tokens, origin_name="elsewhere.example")
    client = make_client(system, replace(trust, tokens=pinned))
    try:
        with pytest.raises(TokenChallengeRefusedError,
                           match=r"origin 'gateway\.privproc\.local', 0-byte redemption "
                                 r"context\) that is not the one the trust file names \(issuer "
                                 r"'issuer\.privproc\.local', origin 'elsewhere\.example'"):
            client.summarize([{"sender": "Ana", "time": "t", "text": "lunch at noon?"}])
        assert client.ohttp.challenge is not None
        assert list(client.ohttp.challenge.origin_info) == ["elsewhere.example"]
    finally:
        client.close()
