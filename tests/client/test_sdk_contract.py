"""The SDK's contract, with no network: input is refused before anything is fetched, sent
or spent; only ClientErrors leave its public methods, each with the original failure as
its cause; expiry is told by type; one constructor; safe terminal output."""

from __future__ import annotations

import asyncio
import errno
import http.client
import inspect
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn, cast

import aiohttp
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import privproc.client
from privproc.client import sdk
from privproc.client.display import printable
from privproc.client.errors import (
    ClientError,
    InvalidInputError,
    KeyExpiredError,
    KeyNotLoggedError,
    KeyRecordExpiredError,
    LogError,
    LogForkDetectedError,
    LogUnavailableError,
    LogVerificationError,
    NoVerifiedNodeError,
    RequestError,
    StateError,
    TransportError,
    TrustConfigError,
    UnexpectedError,
)
from privproc.client.http import ConnectionPool
from privproc.client.sdk import AsyncPrivateProcessingClient, NodeList, PrivateProcessingClient
from privproc.client.tokens import TokenWallet
from privproc.errors import PrivprocError
from privproc.paths import default_state_dir, default_trust_file
from privproc.tlog.client import (
    CheckpointVerificationError,
    LogFetchError,
    LogForkError,
)
from privproc.tlog.view import LogViewStateError
from privproc.wire import privacypass as pp
from privproc.wire.errors import WireError
from privproc.wire.limits import RequestInputError

from .test_transparency import GATEWAY, NOW, W1, Log, gateway_config, key, trust

SRC = Path(__file__).resolve().parents[2] / "src" / "privproc"
CHAT = [{"sender": "Ana", "time": "2026-01-01T10:00", "text": "lunch at noon?"}]


# -- fakes that fail the test when touched ---------------------------------------------------


class UntouchableWallet:
    """A token wallet whose every use (take, fetch, refill, count) fails the test."""

    token_type = pp.TOKEN_TYPE_BLIND_RSA

    def __init__(self) -> None:
        self.key_check: object = None

    def __getattr__(self, name: str) -> NoReturn:
        pytest.fail(f"a token was asked for (wallet.{name})")


class UntouchableOHTTP:
    def __getattr__(self, name: str) -> NoReturn:
        pytest.fail(f"something was sent (ohttp.{name})")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> NoReturn:
        pytest.fail(f"the network was touched: {args[:2]}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def untouchable_client(**kwargs: Any) -> PrivateProcessingClient:
    client = PrivateProcessingClient(trust(), tokens=cast(TokenWallet, UntouchableWallet()),
                                     clock=lambda: NOW, **kwargs)
    client.ohttp = cast(Any, UntouchableOHTTP())
    return client


def msg(text: str = "hi", sender: str = "Ana", time: str = "10:00") -> dict[str, str]:
    return {"sender": sender, "time": time, "text": text}


BAD_SUMMARIES: list[tuple[Any, Any, Any, str]] = [
    ([], 5, None, "messages"),
    ("lunch at noon?", 5, None, "messages"),
    (None, 5, None, "messages"),
    ([msg()] * 101, 5, None, "messages"),
    ([{"sender": "Ana", "time": "t"}], 5, None, "messages[0].text"),
    ([{"sender": "Ana", "time": "t", "text": 4}], 5, None, "messages[0].text"),
    ([{**msg(), "phone": "+15550100"}], 5, None, "messages[0]"),
    ([msg("x" * 100_000)], 5, None, "messages[0].text"),
    ([msg("x" * 1990)] * 7, 5, None, "messages"),
    ([msg(""), msg("   ")], 5, None, "messages"),
    ([msg()], 0, None, "max_bullets"),
    ([msg()], 500, None, "max_bullets"),
    ([msg()], True, None, "max_bullets"),
    ([msg()], "3", None, "max_bullets"),
    ([msg()], 5, "R" * 65, "reader"),
    ([msg()], 5, ["Sam"], "reader"),
]
BAD_WRITES: list[tuple[Any, Any, str]] = [
    ("", "funny", "draft"),
    ("  \n ", "funny", "draft"),
    ("x" * 100_000, "funny", "draft"),
    (None, "funny", "draft"),
    ("see you at noon", "x", "tone"),
    ("see you at noon", "", "tone"),
    ("see you at noon", None, "tone"),
]


# -- 1, 2: input is refused before anything is fetched, sent or spent -----------------------


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize(("messages", "max_bullets", "reader", "field"), BAD_SUMMARIES)
def test_bad_summaries_are_refused_before_any_network_or_token(
        messages: Any, max_bullets: Any, reader: Any, field: str) -> None:
    client = untouchable_client()
    with pytest.raises(InvalidInputError) as err:
        client.summarize(messages, max_bullets, reader=reader)
    assert err.value.field == field
    assert isinstance(err.value, RequestError) and isinstance(err.value, ValueError)
    assert isinstance(err.value.__cause__, RequestInputError)
    assert str(err.value) == str(err.value.__cause__)


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize(("draft", "tone", "field"), BAD_WRITES)
def test_bad_drafts_are_refused_before_any_network_or_token(
        draft: Any, tone: Any, field: str) -> None:
    client = untouchable_client()
    with pytest.raises(InvalidInputError) as err:
        client.write(draft, tone)
    assert err.value.field == field


@pytest.mark.usefixtures("no_network")
def test_refusals_are_precise() -> None:
    client = untouchable_client()
    cases: list[tuple[Any, str]] = [
        (lambda: client.write("x" * 100_000, "funny"),
         "draft is 100000 characters; the limit is 2000"),
        (lambda: client.write("", "funny"), "draft is empty"),
        (lambda: client.write("hi", "x"), "unknown tone 'x': expected one of rephrase, "
                                          "professional, funny, supportive, proofread"),
        (lambda: client.summarize(CHAT, 0), "max_bullets must be 1..10, got 0"),
        (lambda: client.summarize(CHAT, 5, reader="R" * 65),
         "reader is 65 characters; the limit is 64"),
    ]
    for call, message in cases:
        with pytest.raises(InvalidInputError) as err:
            call()
        assert str(err.value) == message


@pytest.mark.usefixtures("no_network")
def test_the_async_client_refuses_the_same_way() -> None:
    client = AsyncPrivateProcessingClient(trust(), tokens=cast(TokenWallet,
                                                                UntouchableWallet()))
    client.sync.ohttp = cast(Any, UntouchableOHTTP())

    async def run() -> None:
        for messages, max_bullets, reader, field in BAD_SUMMARIES:
            with pytest.raises(InvalidInputError) as err:
                await client.summarize(messages, max_bullets, reader=reader)
            assert err.value.field == field
        for draft, tone, field in BAD_WRITES:
            with pytest.raises(InvalidInputError) as err:
                await client.write(draft, tone)
            assert err.value.field == field

    asyncio.run(run())


def test_good_input_does_go_to_the_relay(monkeypatch: pytest.MonkeyPatch) -> None:
    """The counterpart: what stopped the requests above was the check, nothing else."""
    asked: list[str] = []

    def request(pool: object, method: str, url: str, *args: object, **kwargs: object
                ) -> NoReturn:
        asked.append(url)
        raise ConnectionRefusedError("no relay in this test")

    monkeypatch.setattr(ConnectionPool, "request", request)
    client = untouchable_client()
    with pytest.raises(TransportError):
        client.summarize([msg("x" * 2000, "s" * 64, "t" * 64)], 10, reader="R" * 64)
    with pytest.raises(TransportError):
        client.write("d" * 2000, "proofread")
    assert asked == ["http://relay.invalid/privproc/keys"] * 2


def test_the_payload_carries_exactly_the_three_fields() -> None:
    payload = sdk.summary_payload((msg("a"), msg("b")), 3, "Sam")
    assert payload == {"messages": [msg("a"), msg("b")], "max_bullets": 3, "reader": "Sam"}
    assert "reader" not in sdk.summary_payload([msg()], 3, "")
    assert sdk.write_payload("hi", "funny") == {"draft": "hi", "tone": "funny"}


# -- 3: only ClientErrors leave, with the original failure as cause ------------------------


class FailingView:
    """A log view whose sync raises ``exc``."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def sync(self) -> None:
        raise self.exc


FAILURES: list[tuple[BaseException, type[ClientError]]] = [
    (LogFetchError("checkpoint: 502"), LogUnavailableError),
    (CheckpointVerificationError("quorum not met"), LogVerificationError),
    (LogForkError("log fork", b"first note", b"second note"), LogForkDetectedError),
    (LogViewStateError("log-view.json: malformed"), StateError),
    (ConnectionResetError(errno.ECONNRESET, "reset"), TransportError),
    (TimeoutError("timed out"), TransportError),
    (http.client.IncompleteRead(b"par", 10), TransportError),
    (socket.gaierror(-2, "Name or service not known"), TransportError),
    (aiohttp.ClientPayloadError("cut"), TransportError),
    (OSError(errno.ENOSPC, "No space left on device"), StateError),
    (PermissionError(errno.EACCES, "Permission denied", "log-view.json"), StateError),
    (ValueError("bad"), UnexpectedError),
    (KeyError("x"), UnexpectedError),
    (RuntimeError("bug"), UnexpectedError),
    (WireError("malformed"), UnexpectedError),
    (TransportError("already a client error"), TransportError),
]


@pytest.mark.parametrize(("failure", "expected"), FAILURES,
                         ids=[type(f).__name__ for f, _ in FAILURES])
def test_failures_below_leave_as_client_errors_with_their_cause(
        failure: BaseException, expected: type[ClientError]) -> None:
    client = untouchable_client()
    client.view = cast(Any, FailingView(failure))
    with pytest.raises(ClientError) as err:
        client.refresh(tokens=False)
    assert type(err.value) is expected
    assert isinstance(err.value, PrivprocError)
    if isinstance(failure, ClientError):
        assert err.value is failure
    else:
        assert err.value.__cause__ is failure
    assert str(failure) in str(err.value)


def test_a_log_fork_keeps_its_evidence_and_its_old_type() -> None:
    client = untouchable_client()
    client.view = cast(Any, FailingView(LogForkError("log fork: ...", b"one", b"two")))
    with pytest.raises(LogForkDetectedError) as err:
        client.start()
    assert (err.value.first, err.value.second) == (b"one", b"two")
    # One except clause still catches it, whichever a caller wrote.
    assert isinstance(err.value, LogForkError) and isinstance(err.value, LogVerificationError)
    assert isinstance(err.value, LogError) and isinstance(err.value, ClientError)


def test_the_log_being_unreachable_is_a_transport_and_a_log_error() -> None:
    assert issubclass(LogUnavailableError, TransportError)
    assert issubclass(LogUnavailableError, LogError)


@pytest.mark.parametrize("failure", [KeyboardInterrupt(), SystemExit(3)])
def test_interrupts_are_not_wrapped(failure: BaseException) -> None:
    client = untouchable_client()
    client.view = cast(Any, FailingView(failure))
    with pytest.raises(type(failure)):
        client.refresh(tokens=False)


def test_a_cancelled_async_call_stays_cancelled() -> None:
    client = AsyncPrivateProcessingClient(trust())
    client.sync.view = cast(Any, FailingView(asyncio.CancelledError()))
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(client.refresh(tokens=False))


def test_the_async_client_wraps_failures_too() -> None:
    client = AsyncPrivateProcessingClient(trust())
    failure = http.client.IncompleteRead(b"")
    client.sync.view = cast(Any, FailingView(failure))
    with pytest.raises(TransportError) as err:
        asyncio.run(client.refresh(tokens=False))
    assert err.value.__cause__ is failure


def test_bad_start_arguments_are_invalid_input() -> None:
    client = untouchable_client()
    for interval, jitter, field in ((0, 0.5, "interval"), (-1.0, 0.5, "interval"),
                                    ("300", 0.5, "interval"), (60, 1.0, "jitter"),
                                    (60, -0.1, "jitter")):
        with pytest.raises(InvalidInputError) as err:
            client.start(interval, jitter)
        assert err.value.field == field
        assert isinstance(err.value, ValueError)  # what start raised before


def test_every_public_method_keeps_the_contract() -> None:
    """Each public method of the client runs inside the boundary (so a new one must)."""
    public = [name for name, _ in inspect.getmembers(PrivateProcessingClient, callable)
              if not name.startswith("_")]
    assert {"from_trust_file", "refresh", "start", "close", "refresh_keys", "gateway_key",
            "candidates", "verify_node", "verified_nodes", "summarize",
            "write"} <= set(public)
    for name in [*public, "__init__"]:
        assert hasattr(getattr(PrivateProcessingClient, name), "__wrapped__"), name


def test_the_network_error_path_of_the_relay_get_is_a_transport_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    failure = http.client.RemoteDisconnected("closed")

    def request(*args: object, **kwargs: object) -> NoReturn:
        raise failure

    monkeypatch.setattr(ConnectionPool, "request", request)
    with pytest.raises(TransportError) as err:
        untouchable_client().refresh_keys()
    assert err.value.__cause__ is failure


# -- the constructor: from_trust_file ----------------------------------------------------------


def trust_file(folder: Path) -> Path:
    from ..tlog.helpers import LOG_SIGNER

    path = folder / "client.toml"
    path.write_text(f"""
[service]
relay = "http://127.0.0.1:9/"
gateway_name = "{GATEWAY}"

[log]
vkey = "{LOG_SIGNER.verifier_key}"
witnesses = ["{W1.verifier_key}"]
quorum = 1

[tokens]
issuer = "http://127.0.0.1:9"
account_token = "t"
""")
    return path


@pytest.mark.usefixtures("no_network")
def test_from_trust_file_builds_a_client_without_the_network(tmp_path: Path) -> None:
    path = trust_file(tmp_path)
    seen: list[str] = []
    client = PrivateProcessingClient.from_trust_file(str(path), progress=seen.append,
                                                     timeout=7)
    assert client.trust.gateway_name == GATEWAY and client.timeout == 7
    assert client.tokens is not None and client.tokens.cache_path == tmp_path / "tokens.json"
    assert client.view.state_path == tmp_path / "log-view.json"
    elsewhere = tmp_path / "state"
    client = PrivateProcessingClient.from_trust_file(path, state_dir=elsewhere)
    assert client.view.state_path == elsewhere / "log-view.json"
    async_client = AsyncPrivateProcessingClient.from_trust_file(path, state_dir=elsewhere)
    assert isinstance(async_client.sync, PrivateProcessingClient)
    assert async_client.sync.view.state_path == elsewhere / "log-view.json"


def test_from_trust_file_failures_are_client_errors(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TrustConfigError, match="No such file"):
        PrivateProcessingClient.from_trust_file(tmp_path / "missing.toml")
    with pytest.raises(TrustConfigError):
        AsyncPrivateProcessingClient.from_trust_file(tmp_path / "missing.toml")
    with pytest.raises(InvalidInputError):
        PrivateProcessingClient.from_trust_file(cast(Any, None))

    path = trust_file(tmp_path)
    (tmp_path / "log-view.json").write_text("{not json")
    with pytest.raises(StateError) as err:
        PrivateProcessingClient.from_trust_file(path)
    assert isinstance(err.value.__cause__, LogViewStateError)

    (tmp_path / "log-view.json").unlink()
    (tmp_path / "tokens.json").mkdir()  # the wallet's cache cannot be read
    with pytest.raises(StateError) as err:
        PrivateProcessingClient.from_trust_file(path)
    assert isinstance(err.value.__cause__, OSError)

    failure = RuntimeError("a loader bug")

    def broken(*args: object) -> NoReturn:
        raise failure

    monkeypatch.setattr(sdk, "load_trust", broken)
    with pytest.raises(TrustConfigError) as err:
        PrivateProcessingClient.from_trust_file(path)
    assert err.value.__cause__ is failure


def test_trust_config_error_is_a_client_error() -> None:
    from privproc.client import trust as trust_module

    assert trust_module.TrustConfigError is TrustConfigError
    assert issubclass(TrustConfigError, ClientError)


# -- expiry is told by type ------------------------------------------------------------------


def test_a_refused_nodes_exception_is_kept_by_type() -> None:
    client = untouchable_client()
    expired = KeyExpiredError("n1: node key expired at ...")
    client.candidates = lambda: NodeList([("n1", b"bundle")], {})  # type: ignore[method-assign]

    def verify(node_id: str, bundle: bytes, releases: object = None) -> NoReturn:
        raise expired

    client.verify_node = verify  # type: ignore[method-assign]
    with pytest.raises(NoVerifiedNodeError) as err:
        client.verified_nodes()
    assert err.value.errors == {"n1": expired}
    assert all(isinstance(e, KeyExpiredError) for e in err.value.errors.values())
    assert "KeyExpiredError" in err.value.reasons["n1"]


def keyed_client(log: Log, indices: list[int], monkeypatch: pytest.MonkeyPatch,
                 now: int = NOW) -> PrivateProcessingClient:
    client = untouchable_client()
    client.clock = lambda: now
    client.view = log.view()
    body = log.bundle(indices).encode()
    monkeypatch.setattr(client, "_get", lambda path: body)
    return client


def test_every_gateway_key_record_expired_is_its_own_type(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = Log(tmp_path / "log.db")
    idx = log.add(key("ohttp-gateway", GATEWAY, gateway_config(1).encode(), NOW - 900,
                      NOW - 600),
                  key("ohttp-gateway", GATEWAY, gateway_config(2).encode(), NOW - 700,
                      NOW - 10))
    with pytest.raises(KeyRecordExpiredError, match="has expired") as err:
        keyed_client(log, idx, monkeypatch).gateway_key()
    assert isinstance(err.value, KeyNotLoggedError)  # what callers caught before
    assert type(err.value.__cause__) is KeyNotLoggedError


def test_a_missing_gateway_key_is_not_called_expired(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = Log(tmp_path / "log.db")
    foreign, later = gateway_config(1), gateway_config(2)
    idx = log.add(key("ohttp-gateway", "other.test", foreign.encode()),
                  key("ohttp-gateway", GATEWAY, later.encode(), NOW + 100,
                      NOW + 900))  # not valid yet: not expired either
    with pytest.raises(KeyNotLoggedError) as err:
        keyed_client(log, idx, monkeypatch).gateway_key()
    assert type(err.value) is KeyNotLoggedError
    client = keyed_client(log, idx, monkeypatch, now=NOW + 100)
    assert client.gateway_key().config == later


def test_no_code_tells_errors_apart_by_their_message_text() -> None:
    """Expiry and the like are types: nothing matches on an exception's text."""
    pattern = re.compile(r"""in str\(\w+\)|str\(\w+\)\.(?:startswith|endswith|find)|"""
                         r"""\.args\[0\]\s*(?:==|in)|["']expire""")
    files = [*sorted((SRC / "client").glob("*.py")), SRC / "cli.py"]
    offending = [f"{path.name}:{n}: {line.strip()}" for path in files if path.exists()
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if pattern.search(line)]
    assert offending == []


# -- 4: the default trust file ---------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    monkeypatch.delenv("PRIVPROC_STATE", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    yield tmp_path


def test_the_state_dir_follows_the_environment(clean_env: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    home = clean_env / "home"
    assert default_state_dir() == home / ".local" / "state" / "privproc"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")  # ignored, as XDG says
    assert default_state_dir() == home / ".local" / "state" / "privproc"
    monkeypatch.setenv("XDG_STATE_HOME", str(clean_env / "xdg"))
    assert default_state_dir() == clean_env / "xdg" / "privproc"
    monkeypatch.setenv("PRIVPROC_STATE", "")  # empty: unset
    assert default_state_dir() == clean_env / "xdg" / "privproc"
    monkeypatch.setenv("PRIVPROC_STATE", str(clean_env / "mine"))
    assert default_state_dir() == clean_env / "mine"
    assert default_trust_file() == clean_env / "mine" / "client.toml"
    assert privproc.client.default_trust_file() == clean_env / "mine" / "client.toml"
    monkeypatch.setenv("PRIVPROC_STATE", "~/pp")
    assert default_state_dir() == home / "pp"
    assert not (clean_env / "mine").exists() and not home.exists()  # nothing created


# -- 5: printable ----------------------------------------------------------------------------


def _forbidden(char: str) -> bool:
    code = ord(char)
    return ((code < 0x20 and char not in "\t\n") or 0x7F <= code <= 0x9F
            or 0x202A <= code <= 0x202E or 0x2066 <= code <= 0x2069
            or 0xD800 <= code <= 0xDFFF)


_hostile = st.lists(st.one_of(
    st.characters(),
    st.sampled_from(["\x1b", "[", "]", "\x07", "\\", "\x9b", "\x9c", "\x9d", "\r", "\u202e",
                     "\u2067", "\u200e", "\u200f", "0", ";", "m", "P", "_"]),
    st.sampled_from(["\x1b[31m", "\x1b]0;title\x07", "\x1b]8;;http://x\x1b\\", "\x1bc",
                     "\x1b[2J", "\x9b1;2H", "\x1bP+q\x1b\\", "\ud800"]),
)).map("".join)


@given(_hostile)
@example("\x1b\x1b[31m[0m")
@example("\x1b]0;unterminated title")
def test_printable_output_has_no_control_escape_or_override(text: str) -> None:
    out = printable(text)
    assert not any(_forbidden(c) for c in out), ascii(out)
    assert printable(out) == out  # idempotent


@given(st.text(st.characters(exclude_categories=("Cc", "Cs"),
                             exclude_characters="\u202a\u202b\u202c\u202d\u202e"
                                                "\u2066\u2067\u2068\u2069") | st.sampled_from(
    ["\t", "\n", "\u200e", "\u200f", "\u061c"])))
def test_printable_keeps_ordinary_text_as_it_is(text: str) -> None:
    assert printable(text) == text


@pytest.mark.parametrize(("text", "shown"), [
    ("\x1b[1;31mURGENT\x1b[0m pay now", "URGENT pay now"),
    ("\x1b]0;owned\x07title", "title"),
    ("\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\", "click"),
    ("\x1b]52;c;aGVsbG8=\x07clipboard", "clipboard"),
    ("ok\x1b[2K\x1b[1Aforged", "okforged"),
    ("\x9b31mC1 CSI", "C1 CSI"),
    ("safe\roverwritten", "safe\noverwritten"),
    ("crlf\r\nline", "crlf\nline"),
    ("bell\x07 and nul\x00 and del\x7f", "bell and nul and del"),
    ("file\u202egnp.exe", "filegnp.exe"),
    ("\u2067isolate\u2069", "isolate"),
    ("\u200e<Media omitted>\u200e", "\u200e<Media omitted>\u200e"),
    ("tab\tand\nnewline", "tab\tand\nnewline"),
    ("lone \udc80 surrogate", "lone \ufffd surrogate"),
    ("\x1b]0;never ends", "0;never ends"),
])
def test_printable_examples(text: str, shown: str) -> None:
    assert printable(text) == shown
