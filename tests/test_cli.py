"""The command line as a newcomer meets it: one shape, help everywhere, one-line errors,
exit codes 0 / 1 (refused) / 2 (usage), and input refused before anything is sent."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from privproc import clikit
from privproc.cli import build_parser, main
from privproc.service import Listen
from privproc.up.lock import StateLock
from privproc.up.system import _client_toml
from privproc.wire import note

URLS = {"relay": "http://127.0.0.1:9", "log": "http://127.0.0.1:9",
        "issuer": "http://127.0.0.1:9"}


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test has its own per-user state directory, empty."""
    state = tmp_path / "state"
    monkeypatch.setenv("PRIVPROC_STATE", str(state))
    return state


@pytest.fixture(scope="module")
def trust_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid trust file (unreachable services) with its simulated roots."""
    from privproc.attest.simulated import SimulatedIdentity
    from privproc.tlog.keys import create_signer
    from privproc.tlog.witness_app import load_or_create_witness_key

    d = tmp_path_factory.mktemp("trust")
    log = create_signer(d / "log.key", "log.privproc.local")
    witness = load_or_create_witness_key(d / "witness", "witness.privproc.local")
    SimulatedIdentity.load_or_create(d / "node" / "simulated", rsa_bits=2048)
    (d / "client.toml").write_bytes(_client_toml(URLS, log.verifier_key,
                                                 witness.verifier_key, "account"))
    return d


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], err


# ---- shape ----------------------------------------------------------------------------


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield from _parsers(child)


def test_every_command_and_option_is_described() -> None:
    missing = []
    for parser in _parsers(build_parser()):
        if not parser.description:
            missing.append(f"{parser.prog}: no description")
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            if not action.help:
                missing.append(f"{parser.prog} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_every_service_is_party_serve() -> None:
    parser = build_parser()
    for party in ("relay", "gateway", "issuer", "node", "log", "witness", "echo"):
        args = parser.parse_args([party, "serve", "--listen", "127.0.0.1:0",
                                  *_required(party)])
        assert args.listen == Listen("127.0.0.1", 0)
        assert args.log_level == "info"


def _required(party: str) -> list[str]:
    return {"relay": ["--gateway", "http://g"],
            "gateway": ["--upstream", "http://u", "--state", "/s"],
            "issuer": ["--state", "/s"], "node": ["--state", "/s"], "log": ["--state", "/s"],
            "witness": ["--state", "/s", "--log-vkey",
                        note.Ed25519Signer("log.privproc.local", bytes(32)).verifier_key],
            "echo": []}[party]


def test_one_name_and_type_per_concept() -> None:
    parser = build_parser()
    grace = [parser.parse_args(argv).grace for argv in (
        ["gateway", "rotate-keys", "--state", "/s", "--grace", "5"],
        ["issuer", "rotate-keys", "--state", "/s", "--grace", "5"],
        ["node", "serve", "--listen", "h:1", "--state", "/s", "--grace", "5"])]
    assert grace == [5.0, 5.0, 5.0]
    for argv in (["relay", "serve", "--listen", "h:1", "--gateway", "g"],
                 ["gateway", "serve", "--listen", "h:1", "--upstream", "u", "--state", "/s"],
                 ["node", "serve", "--listen", "h:1", "--state", "/s"]):
        assert isinstance(parser.parse_args([*argv, "--max-body", "10"]).max_body, int)


def test_gateway_serve_and_rotate_parse() -> None:
    parser = build_parser()
    args = parser.parse_args(["gateway", "serve", "--listen", "127.0.0.1:1", "--upstream",
                              "http://u", "--state", "/s"])
    assert args.gateway_action == "serve" and args.listen == Listen("127.0.0.1", 1)
    args = parser.parse_args(["gateway", "rotate-keys", "--state", "/s", "--grace", "5"])
    assert args.gateway_action == "rotate-keys" and args.grace == 5.0


def test_listen_parsing() -> None:
    assert Listen.parse("127.0.0.1:8080") == Listen("127.0.0.1", 8080)
    assert Listen.parse("[::1]:443") == Listen("::1", 443)
    for bad in ("8080", "host:", ":80", "h:99999", "h:x"):
        with pytest.raises(ValueError, match=r"HOST:PORT|port"):
            Listen.parse(bad)


# ---- usage errors: exit 2, one line ---------------------------------------------------


@pytest.mark.parametrize("argv, needle", [
    (["gateway", "serve", "--listen", "127.0.0.1:1"], "--upstream"),
    (["relay", "serve", "--listen", "nope", "--gateway", "http://g"], "expected HOST:PORT"),
    (["summarize", "x.txt", "--bullets", "0"], "expected a positive integer"),
    (["summarize", "x.txt", "--bullets", "500"], "1..10"),
    (["summarize", "x.txt", "--unread", "-3"], "positive integer"),
    (["write", "hi", "--tone", "angry"], "invalid choice"),
    (["node", "serve", "--listen", "h:1", "--state", "/s", "--grace", "soon"], "seconds"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_options_are_one_line_usage_errors(capsys: pytest.CaptureFixture[str],
                                               argv: list[str], needle: str) -> None:
    code, _, err = _run(capsys, *argv)
    assert code == 2
    _one_line_error(err, needle)


def test_client_commands_without_a_trust_file_say_how_to_get_one(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    chat = tmp_path / "chat.txt"
    chat.write_text("[01/06/2026, 09:00:00] Ana: lunch at 1?\n")
    for argv in (["summarize", str(chat)], ["write", "hello there"], ["audit"],
                 ["receipt", "verify", str(chat)]):
        code, _, err = _run(capsys, *argv)
        assert code == 2, argv
        _one_line_error(err, "privproc up")


def test_bad_trust_files_are_one_line_errors(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path, trust_dir: Path) -> None:
    good = (trust_dir / "client.toml").read_text()
    vkey = good.split('vkey = "')[1].split('"')[0]
    cases = {
        "not-utf8": b"\xff\xfe[service]\n",
        "truncated-vkey": good.replace(vkey, vkey[:-10]).encode(),
        "witnesses-string": good.replace(good.split("witnesses = ")[1].split("\n")[0],
                                         '"abc"').encode(),
        "relay-number": good.replace(f'relay = "{URLS["relay"]}/"', "relay = 5").encode(),
        "not-toml": b"[service\n",
    }
    receipt = tmp_path / "r.json"
    receipt.write_text("{}")
    for name, content in cases.items():
        path = trust_dir / f"{name}.toml"
        path.write_bytes(content)
        for argv in (["receipt", "verify", str(receipt), "--trust", str(path)],
                     ["audit", "--trust", str(path)]):
            code, _, err = _run(capsys, *argv)
            assert code == 2, (name, argv, err)
            _one_line_error(err, str(path))


def test_receipt_fields_missing_or_not_json(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path, trust_dir: Path) -> None:
    trust = str(trust_dir / "client.toml")
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"version": 2, "node_id": "n"}))
    code, out, err = _run(capsys, "receipt", "verify", str(path), "--trust", trust)
    assert code == 1 and out.startswith("REFUSED: field ") and "Traceback" not in out + err
    path.write_text("[1, 2")
    code, _, err = _run(capsys, "receipt", "verify", str(path), "--trust", trust)
    assert code == 2
    _one_line_error(err, "not a JSON receipt")
    code, _, err = _run(capsys, "receipt", "verify", str(tmp_path / "none.json"), "--trust",
                        trust)
    assert code == 2
    _one_line_error(err, "none.json")


# ---- refused before a token is spent --------------------------------------------------


@pytest.mark.parametrize("draft, needle", [
    ("", "empty"), ("   \n\t", "blank"), ("x" * 100_000, "the limit is 2000"),
])
def test_bad_drafts_are_refused_before_anything_is_sent(
        capsys: pytest.CaptureFixture[str], trust_dir: Path, draft: str, needle: str) -> None:
    # The trust file points at nothing that answers: reaching the network would fail
    # differently (and a token would be spent against a real system).
    code, _, err = _run(capsys, "write", draft, "--trust", str(trust_dir / "client.toml"))
    assert code == 2
    _one_line_error(err, needle)


def test_write_reads_a_file_or_standard_input(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # An empty draft from each source reaches the same check (nothing else is needed).
    empty = tmp_path / "draft.txt"
    empty.write_text("\n")
    code, _, err = _run(capsys, "write", "--file", str(empty))
    assert code == 2 and "draft is empty" in err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\n")))
    code, _, err = _run(capsys, "write", "-")
    assert code == 2 and "draft is empty" in err
    code, _, err = _run(capsys, "write", "--file", str(tmp_path / "missing.txt"))
    assert code == 2
    _one_line_error(err, "missing.txt")
    code, _, err = _run(capsys, "write", "text", "--file", str(empty))
    assert code == 2
    _one_line_error(err, "not both")


def test_summarize_refuses_an_unwritable_receipt_before_work(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, trust_dir: Path) -> None:
    chat = tmp_path / "chat.txt"
    chat.write_text("[01/06/2026, 09:00:00] Ana: lunch at 1?\n")
    code, _, err = _run(capsys, "summarize", str(chat), "--receipt", "/nonexistent/dir/r.json",
                        "--trust", str(trust_dir / "client.toml"))
    assert code == 2
    _one_line_error(err, "/nonexistent/dir")


def test_summarize_of_a_missing_or_empty_chat(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    code, _, err = _run(capsys, "summarize", str(tmp_path / "none.txt"))
    assert code == 2
    _one_line_error(err, "none.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    code, _, err = _run(capsys, "summarize", str(empty))
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


# ---- up: one per state directory ------------------------------------------------------


def test_second_up_on_a_state_is_refused_with_the_holders_pid(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    state = tmp_path / "up"
    lock = StateLock(state)
    try:
        code, _, err = _run(capsys, "up", "--state", str(state), "--backend", "echo")
        assert code == 1
        _one_line_error(err, f"in use by PID {os.getpid()}")
    finally:
        lock.release()
    StateLock(state).release()  # free again once released


def test_up_state_that_is_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    code, _, err = _run(capsys, "up", "--state", str(path))
    assert code == 2
    _one_line_error(err, "is a file")


def test_rotate_keys_without_state_reports_clearly(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(capsys, "gateway", "rotate-keys", "--state", f"{tmp_path}/none")
    assert code == 1
    _one_line_error(err, "does not exist")


def test_an_unexpected_error_is_one_line(capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from privproc.up import cli as up_cli

    def boom(args: argparse.Namespace) -> int:
        raise KeyError("x")

    monkeypatch.setattr(up_cli, "_up", boom)
    monkeypatch.delenv("PRIVPROC_DEBUG", raising=False)
    code, _, err = _run(capsys, "up")
    assert code == 1
    _one_line_error(err, "internal error", "KeyError", "PRIVPROC_DEBUG")


def test_a_secret_that_starts_with_a_dash_is_given_as_one_word() -> None:
    # token_urlsafe() may start with "-": as its own argv word it reads as an option, so
    # privproc up passes secrets as @FILE and a literal one goes with "=".
    args = build_parser().parse_args(["issuer", "serve", "--listen", "h:1", "--state", "/s",
                                      "--static-account=-tok=alice"])
    assert args.static_account == ["-tok=alice"]


def test_input_tail_of_a_file_and_of_a_pipe(tmp_path: Path) -> None:
    from privproc.clikit import read_input_tail

    data = bytes(range(256)) * 100
    path = tmp_path / "in.bin"
    path.write_bytes(data)
    assert read_input_tail(path, "input", 1000) == (data[-1000:], len(data))
    assert read_input_tail(path, "input", 10**6) == (data, len(data))
    read, write = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(write, data), os.close(write)))
    writer.start()
    try:
        assert read_input_tail(Path(f"/dev/fd/{read}"), "input", 1000) == (data[-1000:],
                                                                            len(data))
    finally:
        writer.join()
        os.close(read)
    with pytest.raises(clikit.UsageError, match=r"input .*missing"):
        read_input_tail(tmp_path / "missing", "input", 10)


def test_summarize_reads_only_the_end_of_a_huge_chat_export(
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A chat export of years (or one someone crafted) is not read and parsed in full:
    the last messages are what is summarized."""
    from privproc.client import cli as client_cli

    monkeypatch.setattr(client_cli, "CHAT_EXPORT_TAIL", 1 << 20)
    old = "[01/06/2026, 09:00:00] Old: " + "x" * 2000 + "\n"
    chat = tmp_path / "chat.txt"
    chat.write_text(old * 1500 + "[02/06/2026, 10:00:00] Ana: lunch at 1?\n")
    # (a trust file that is not there stops it once the chat is read, before any request)
    code, _, err = _run(capsys, "summarize", str(chat), "--trust", str(tmp_path / "none"))
    assert code == 2
    assert "the chat export has 3 MiB: reading its last 1 MiB" in err
    assert "summarizing the last 100 messages privately" not in err
