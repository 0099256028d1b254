"""Signer key files: the log's key, publishers' keys and the witness's cosigner key go
through one module (privproc.tlog.keys)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from privproc.tlog import keys
from privproc.tlog.witness_app import (
    KEY_FILE,
    VKEY_FILE,
    WitnessKeyError,
    load_or_create_witness_key,
)
from privproc.wire import note
from privproc.wire.checkpoint import CosignatureSigner


def seed(n: int) -> bytes:
    return bytes(range(n))


def test_signer_files_are_0600_with_a_vkey_beside(tmp_path: Path) -> None:
    old_umask = os.umask(0)
    try:
        signer = keys.create_signer(tmp_path / "log.key", "log.example", rand=seed)
    finally:
        os.umask(old_umask)
    path = tmp_path / "log.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text() == signer.signer_key + "\n"
    assert (tmp_path / "log.key.vkey").read_text() == signer.verifier_key + "\n"
    assert signer.public_key == note.Ed25519Signer("log.example", seed(32)).public_key
    assert keys.read_signer(path).signer_key == signer.signer_key
    with pytest.raises(keys.KeyFileError, match="already exists"):
        keys.create_signer(path, "log.example")
    assert keys.read_signer(path).signer_key == signer.signer_key  # not overwritten


def test_load_or_create_signer_checks_the_name_and_repairs_the_vkey(tmp_path: Path) -> None:
    path = tmp_path / "state" / "log.key"
    signer = keys.load_or_create_signer(path, "log.example")
    assert keys.load_or_create_signer(path, "log.example").signer_key == signer.signer_key
    with pytest.raises(keys.KeyNameError, match=r"holds the key 'log\.example', expected 'x'"):
        keys.load_or_create_signer(path, "x")
    vkey = keys.vkey_path(path)
    vkey.unlink()
    keys.load_or_create_signer(path, "log.example")
    assert vkey.read_text() == signer.verifier_key + "\n"


def test_key_files_are_checked_on_every_read(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    signer = keys.create_signer(path, "k.example")
    path.chmod(0o644)
    with pytest.raises(keys.KeyFileError, match="accessible by others"):
        keys.read_signer(path)
    path.chmod(0o600)
    cosigner = keys.load_or_create_cosigner(tmp_path / "w.key", "w.example")
    with pytest.raises(keys.KeyFileError, match="signature type 0x01") as info:
        keys.read_signer(tmp_path / "w.key")  # a cosigner key is not a note signer key
    assert cosigner.signer_key not in str(info.value)
    with pytest.raises(keys.KeyFileError, match="signature type 0x04") as info:
        keys.read_cosigner(path)
    assert signer.signer_key not in str(info.value)
    with pytest.raises(keys.KeyFileError, match="cannot read the key"):
        keys.read_signer(tmp_path / "missing.key")
    with pytest.raises(keys.KeyFileError, match="key name"):
        keys.create_signer(tmp_path / "bad.key", "has space")
    with pytest.raises(keys.KeyFileError, match="seed source returned 3 bytes"):
        keys.create_signer(tmp_path / "short.key", "ok", rand=lambda n: b"abc")
    with pytest.raises(keys.KeyFileError, match="named like the owner"):
        keys.read_key_publisher(path, "other.example")
    assert keys.read_key_publisher(path, "k.example").name == "k.example"


def test_cosigner_keys_share_the_module_and_the_witness_keeps_its_file_names(
        tmp_path: Path) -> None:
    state = tmp_path / "witness"
    signer = load_or_create_witness_key(state, "w.example", rand=seed)
    assert isinstance(signer, CosignatureSigner)
    same = keys.read_cosigner(state / KEY_FILE, "w.example")
    assert same.signer_key == signer.signer_key
    assert (state / VKEY_FILE).read_text() == signer.verifier_key + "\n"
    assert not (state / (KEY_FILE + ".vkey")).exists()
    (state / VKEY_FILE).write_text("stale\n")
    load_or_create_witness_key(state, "w.example")
    assert (state / VKEY_FILE).read_text() == signer.verifier_key + "\n"
    with pytest.raises(WitnessKeyError, match=r"pass --name w\.example"):
        load_or_create_witness_key(state, "other.example")
    with pytest.raises(keys.KeyNameError):
        keys.read_cosigner(state / KEY_FILE, "other.example")
