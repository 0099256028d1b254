"""The README and docs/ stay true to the command line: every ``privproc`` command line in
a code block parses, and every option an inline ``privproc ...`` span names exists."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from privproc.cli import build_parser
from privproc.wire import note

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
VKEY = note.Ed25519Signer("log.example.com", bytes(32)).verifier_key
PLACEHOLDERS = {r"\b[A-Z_]*VKEY\b": VKEY, r"\bMEASUREMENT\b|\bMODEL_SHA256\b|\bHEX\b": "ab" * 48}
NOT_COMMANDS = {"privproc request", "privproc response"}  # HPKE labels, in the formats


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines with backslash continuations joined, with the number of their first line."""
    joined, first = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        joined, first = (joined + " " + raw.strip(), first) if joined else (raw, number)
        if joined.rstrip().endswith("\\"):
            joined = joined.rstrip()[:-1]
            continue
        yield first, joined
        joined = ""


def _command_lines() -> Iterator[tuple[str, str]]:
    for path in DOCS:
        fenced = False
        for number, line in _logical_lines(path.read_text()):
            text = line.strip()
            if text.startswith("```"):
                fenced = not fenced
                continue
            text = text.removeprefix("$ ")
            if "| privproc " in text:
                text = text.split("| ", 1)[1]
            if fenced and text.startswith(("privproc ", ".venv/bin/privproc ")):
                yield f"{path.name}:{number}", text.replace(".../", "/opt/x/")


def _argv(line: str) -> list[str]:
    for pattern, value in PLACEHOLDERS.items():
        line = re.sub(pattern, value, line)
    return shlex.split(line, comments=True)[1:]


COMMAND_LINES = list(_command_lines())


def test_the_docs_show_command_lines() -> None:
    assert len(COMMAND_LINES) >= 10


@pytest.mark.parametrize("where, line", COMMAND_LINES, ids=[w for w, _ in COMMAND_LINES])
def test_each_documented_command_line_parses(where: str, line: str) -> None:
    if "..." in line:
        pytest.skip("elided")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(_argv(line))
        except SystemExit as exc:
            pytest.fail(f"{where}: {line}\n{err.getvalue()} (exit {exc.code})")


def _parser_for(words: list[str]) -> tuple[argparse.ArgumentParser, int]:
    parser = build_parser()
    depth = 0
    for word in words:
        sub = next((a for a in parser._actions
                    if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or word not in sub.choices:
            break
        parser, depth = sub.choices[word], depth + 1
    return parser, depth


def test_every_option_named_in_the_prose_exists() -> None:
    wrong = []
    for path in DOCS:
        text = path.read_text().replace("\n", " ")
        for span in re.findall(r"`((?:\.venv/bin/)?privproc [^`]*)`", text):
            words = span.split()[1:]
            if span in NOT_COMMANDS or not words or words[0] in ("COMMAND", "PARTY") \
                    or words[0].endswith(":"):
                continue
            parser, depth = _parser_for(words)
            if depth == 0:
                wrong.append(f"{path.name}: unknown command in `{span}`")
                continue
            known = {o for a in parser._actions for o in a.option_strings}
            named = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", span))
            wrong += [f"{path.name}: `{span}`: no {o}" for o in sorted(named - known)]
    assert wrong == []
