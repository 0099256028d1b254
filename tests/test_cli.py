from __future__ import annotations

import pytest

from privproc.cli import build_parser, main
from privproc.service import Listen


def test_listen_parsing() -> None:
    assert Listen.parse("127.0.0.1:8080") == Listen("127.0.0.1", 8080)
    assert Listen.parse("[::1]:443") == Listen("::1", 443)
    for bad in ("8080", "host:", ":80", "h:99999", "h:x"):
        with pytest.raises(ValueError, match=r"HOST:PORT|port"):
            Listen.parse(bad)


def test_gateway_serve_and_rotate_parse() -> None:
    parser = build_parser()
    args = parser.parse_args(["gateway", "--listen", "127.0.0.1:1", "--upstream", "http://u",
                              "--state", "/s"])
    assert args.action is None and args.listen == Listen("127.0.0.1", 1)
    args = parser.parse_args(["gateway", "rotate-keys", "--state", "/s", "--grace", "5"])
    assert args.action == "rotate-keys" and args.grace == 5.0


def test_gateway_without_required_options_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gateway", "--listen", "127.0.0.1:1"]) == 2
    assert "--upstream" in capsys.readouterr().err


def test_bad_listen_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["relay", "--listen", "nope", "--gateway", "http://g"])
    assert exc.value.code == 2
    assert "expected HOST:PORT" in capsys.readouterr().err


def test_rotate_keys_without_state_reports_clearly(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gateway", "rotate-keys", "--state", f"{tmp_path}/none"]) == 1
    assert "does not exist" in capsys.readouterr().err
