"""Measurements: the simulated platform's code+config+model digest, and the sev-snp-measure
wrapper (exercised with a stand-in module: the real package is optional)."""

from __future__ import annotations

import hashlib
import struct
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from privproc.attest import measure
from privproc.attest.measure import (
    MeasurementToolError,
    code_listing,
    default_code_root,
    measure_simulated,
    measure_snp,
)


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    code = tmp_path / "privproc"
    (code / "sub").mkdir(parents=True)
    (code / "__pycache__").mkdir()
    (code / "__init__.py").write_text("x = 1\n")
    (code / "sub" / "mod.py").write_text("y = 2\n")
    (code / "sub" / "data.pem").write_text("PEM\n")
    (code / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\x00junk")
    (code / "stale.pyc").write_bytes(b"\x00junk")
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights" * 1000)
    return code, model


def _reference(code: Path, config: bytes, model: Path) -> bytes:
    """The documented construction, written out independently."""
    files = sorted(["__init__.py", "sub/data.pem", "sub/mod.py"], key=str.encode)
    h = hashlib.sha384(b"privproc-simulated-measurement-v1\x00")
    h.update(b"code\x00" + struct.pack("!I", len(files)))
    for rel in files:
        h.update(struct.pack("!I", len(rel)) + rel.encode()
                 + hashlib.sha256((code / rel).read_bytes()).digest())
    h.update(b"config\x00" + struct.pack("!I", len(config)) + config)
    data = model.read_bytes()
    h.update(b"model\x00" + struct.pack("!Q", len(data)) + hashlib.sha256(data).digest())
    return h.digest()


def test_known_answer(tree: tuple[Path, Path]) -> None:
    code, model = tree
    m = measure_simulated(b"config = 1\n", model, code)
    assert len(m) == 48
    assert m == _reference(code, b"config = 1\n", model)
    assert [p for p, _ in code_listing(code)] == ["__init__.py", "sub/data.pem", "sub/mod.py"]


def test_every_input_changes_the_measurement(tree: tuple[Path, Path], tmp_path: Path) -> None:
    code, model = tree
    base = measure_simulated(b"cfg", model, code)
    assert measure_simulated(b"cfg", model, code) == base  # deterministic
    seen = {base}

    def record() -> None:
        m = measure_simulated(b"cfg", model, code)
        assert m not in seen
        seen.add(m)

    assert measure_simulated(b"cfg2", model, code) not in seen  # config
    (code / "sub" / "mod.py").write_text("y = 3\n")  # a source file
    record()
    (code / "new.py").write_text("")  # an added (empty) file
    record()
    (code / "new.py").rename(code / "renamed.py")  # a path
    record()
    model.write_bytes(model.read_bytes() + b"\x00")  # the model
    record()
    # compiled caches do not count
    before = measure_simulated(b"cfg", model, code)
    (code / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"other")
    (code / "x.pyc").write_bytes(b"other")
    assert measure_simulated(b"cfg", model, code) == before


def test_default_code_root_is_the_installed_package(tmp_path: Path) -> None:
    root = default_code_root()
    assert (root / "attest" / "measure.py").is_file()
    paths = [p for p, _ in code_listing()]
    assert "attest/measure.py" in paths and "attest/roots/amd/ark_milan.pem" in paths
    assert not any("__pycache__" in p or p.endswith(".pyc") for p in paths)
    model = tmp_path / "m"
    model.write_bytes(b"m")
    assert measure_simulated(b"", model) == measure_simulated(b"", model, root)


def test_errors(tree: tuple[Path, Path], tmp_path: Path) -> None:
    code, _ = tree
    with pytest.raises(MeasurementToolError, match="model file"):
        measure_simulated(b"", tmp_path / "missing.bin", code)
    with pytest.raises(MeasurementToolError, match="not a directory"):
        code_listing(tmp_path / "nope")


# --------------------------------------------------------------------------------------
# sev-snp-measure wrapper
# --------------------------------------------------------------------------------------


def test_measure_snp_without_the_tool(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "sevsnpmeasure", None)  # makes the import fail
    monkeypatch.setitem(sys.modules, "sevsnpmeasure.guest", None)
    ovmf = tmp_path / "OVMF.fd"
    ovmf.write_bytes(b"ovmf")
    with pytest.raises(MeasurementToolError, match="pip install sev-snp-measure"):
        measure_snp(ovmf, None, None, None, 4, "EPYC-v4")


@pytest.fixture
def fake_tool(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    pkg = types.ModuleType("sevsnpmeasure")
    guest = types.ModuleType("sevsnpmeasure.guest")
    vcpu_types = types.ModuleType("sevsnpmeasure.vcpu_types")
    sev_mode = types.ModuleType("sevsnpmeasure.sev_mode")

    class SevMode:
        SEV_SNP = "SEV_SNP"

    def calc_launch_digest(*args: Any) -> bytes:
        calls.append(args)
        return b"\x5a" * 48

    guest.calc_launch_digest = calc_launch_digest  # type: ignore[attr-defined]
    vcpu_types.CPU_SIGS = {"EPYC-v4": 0x800F12, "EPYC-Milan": 0xA00F11}  # type: ignore[attr-defined]
    sev_mode.SevMode = SevMode  # type: ignore[attr-defined]
    for name, mod in (("sevsnpmeasure", pkg), ("sevsnpmeasure.guest", guest),
                      ("sevsnpmeasure.vcpu_types", vcpu_types),
                      ("sevsnpmeasure.sev_mode", sev_mode)):
        monkeypatch.setitem(sys.modules, name, mod)
    return calls


def test_measure_snp_calls_the_tool(fake_tool: list[tuple[Any, ...]], tmp_path: Path) -> None:
    files = {}
    for name in ("OVMF.fd", "vmlinuz", "initrd"):
        files[name] = tmp_path / name
        files[name].write_bytes(name.encode())
    digest = measure_snp(files["OVMF.fd"], files["vmlinuz"], files["initrd"], "console=ttyS0",
                         8, "EPYC-Milan", guest_features=0x21)
    assert digest == b"\x5a" * 48
    assert fake_tool == [("SEV_SNP", 8, 0xA00F11, str(files["OVMF.fd"]), str(files["vmlinuz"]),
                          str(files["initrd"]), "console=ttyS0", 0x21)]
    measure_snp(files["OVMF.fd"], None, None, None, 1, "EPYC-v4")
    assert fake_tool[-1] == ("SEV_SNP", 1, 0x800F12, str(files["OVMF.fd"]), None, None, None,
                             0x1)
    with pytest.raises(ValueError, match="unknown vCPU type 'EPYC-Nope'"):
        measure_snp(files["OVMF.fd"], None, None, None, 1, "EPYC-Nope")
    with pytest.raises(ValueError, match="needs a kernel"):
        measure_snp(files["OVMF.fd"], None, files["initrd"], None, 1, "EPYC-v4")
    with pytest.raises(ValueError, match="vcpus"):
        measure_snp(files["OVMF.fd"], None, None, None, 0, "EPYC-v4")
    with pytest.raises(MeasurementToolError, match="does not exist"):
        measure_snp(tmp_path / "missing.fd", None, None, None, 1, "EPYC-v4")


def test_measure_snp_checks_the_tool_output(fake_tool: list[tuple[Any, ...]],
                                            monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    ovmf = tmp_path / "OVMF.fd"
    ovmf.write_bytes(b"o")
    monkeypatch.setattr(sys.modules["sevsnpmeasure.guest"], "calc_launch_digest",
                        lambda *a: b"short")
    with pytest.raises(MeasurementToolError, match="expected 48 bytes"):
        measure.measure_snp(ovmf, None, None, None, 1, "EPYC-v4")
