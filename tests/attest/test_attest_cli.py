"""``privproc attest verify`` / ``privproc measure`` through argparse."""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from privproc.attest import cli as attest_cli
from privproc.attest.evidence import collect_bundle
from privproc.attest.measure import measure_simulated
from privproc.attest.simulated import SimulatedIdentity, SimulatedPlatform
from tests.attest.conftest import MEASUREMENT, key_config

GOOGLE = Path(__file__).resolve().parent.parent / "vectors" / "attest" / "amd" / \
    "google-go-sev-guest"
REPORT = GOOGLE / "attestation.bin"
VCEK = GOOGLE / "vcek_milan.der"
CHAIN = GOOGLE / "ask_ark_milan.pem"
AT = "2025-06-01T00:00:00Z"


def _main_parser() -> argparse.ArgumentParser:
    from privproc.cli import build_parser

    return build_parser()


def _run(argv: Sequence[str]) -> tuple[int, str, str]:
    args = _main_parser().parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    rc = args.func(args, out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


def _write_policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------
# raw SEV-SNP reports (the real Milan vector)
# --------------------------------------------------------------------------------------


def test_real_report_verifies(tmp_path: Path) -> None:
    pol = _write_policy(tmp_path, "allow_debug = true\n")  # the vector's guest allows debug
    rc, out, err = _run(["attest", "verify", str(REPORT), "--vcek", str(VCEK), "--policy",
                         str(pol), "--at", AT])
    assert rc == 0, out + err
    assert out.startswith("VERIFIED\n")
    assert "platform:        sev-snp\n" in out
    assert "product:         Milan" in out
    assert "tcb (certified): bootloader=2 tee=0 snp=5 microcode=68" in out
    assert "signing key:     VCEK" in out and "debug ALLOWED" in out
    assert err == ""
    # same with an explicit chain file, and the measurement can be pinned
    meas = next(line.split()[-1] for line in out.splitlines()
                if line.startswith("measurement:"))
    pol = _write_policy(tmp_path, f'allow_debug = true\nallowed_measurements = ["{meas}"]\n')
    rc, out2, _ = _run(["attest", "verify", str(REPORT), "--vcek", str(VCEK), "--chain",
                        str(CHAIN), "--policy", str(pol), "--at", AT])
    assert rc == 0 and out2 == out


def test_real_report_refusals(tmp_path: Path) -> None:
    rc, out, _ = _run(["attest", "verify", str(REPORT), "--vcek", str(VCEK), "--at", AT])
    assert rc == 1
    assert out.startswith("REFUSED: DebugNotAllowedError: guest policy allows debugging")
    pol = _write_policy(tmp_path, f'allow_debug = true\nallowed_measurements = ["{"00" * 48}"]')
    rc, out, _ = _run(["attest", "verify", str(REPORT), "--vcek", str(VCEK), "--policy",
                       str(pol), "--at", AT])
    assert rc == 1 and out.startswith("REFUSED: MeasurementNotAllowedError:")
    pol = _write_policy(tmp_path, f'allow_debug = true\nreport_data = "{"11" * 64}"')
    rc, out, _ = _run(["attest", "verify", str(REPORT), "--vcek", str(VCEK), "--policy",
                       str(pol), "--at", AT])
    assert rc == 1 and out.startswith("REFUSED: ReportDataMismatchError:")
    pol = _write_policy(tmp_path, "allow_debug = true\nmin_tcb.snp = 6\n")
    rc, out, _ = _run(["attest", "verify", str(REPORT), "--vcek", str(VCEK), "--policy",
                       str(pol), "--at", AT])
    assert rc == 1 and out.startswith("REFUSED: TcbTooLowError: certified TCB snp SPL is 5")
    rc, out, _ = _run(["attest", "verify", str(REPORT), "--vcek", str(VCEK), "--at",
                       "2031-01-01T00:00:00"])
    assert rc == 1 and out.startswith("REFUSED: CertificateValidityError:")
    bad = tmp_path / "tampered.bin"
    data = bytearray(REPORT.read_bytes())
    data[0x90] ^= 1
    bad.write_bytes(bytes(data))
    rc, out, _ = _run(["attest", "verify", str(bad), "--vcek", str(VCEK), "--policy",
                       str(_write_policy(tmp_path, "allow_debug = true")), "--at", AT])
    assert rc == 1 and out.startswith("REFUSED: SignatureError:")


def test_usage_errors(tmp_path: Path) -> None:
    rc, out, err = _run(["attest", "verify", str(REPORT)])
    assert rc == 2 and out == "" and "needs --vcek" in err
    rc, _, err = _run(["attest", "verify", str(tmp_path / "missing")])
    assert rc == 2 and "cannot read evidence" in err
    junk = tmp_path / "junk"
    junk.write_bytes(b"hello")
    rc, _, err = _run(["attest", "verify", str(junk)])
    assert rc == 2 and "neither an evidence bundle" in err
    pol = _write_policy(tmp_path, "allow_debugg = true\n")
    rc, _, err = _run(["attest", "verify", str(REPORT), "--vcek", str(VCEK), "--policy",
                       str(pol)])
    assert rc == 2 and "unknown policy key" in err
    pol = _write_policy(tmp_path, "allow_debug = \n")
    rc, _, err = _run(["attest", "verify", str(REPORT), "--vcek", str(VCEK), "--policy",
                       str(pol)])
    assert rc == 2 and "policy" in err
    rc, _, err = _run(["attest", "verify", str(REPORT), "--vcek", str(VCEK), "--nonce", "00"])
    assert rc == 2 and "--nonce applies to evidence bundles" in err
    with pytest.raises(SystemExit):
        _main_parser().parse_args(["attest", "verify", str(REPORT), "--at", "yesterday"])


# --------------------------------------------------------------------------------------
# simulated bundles
# --------------------------------------------------------------------------------------


@pytest.fixture
def sim_files(sim: SimulatedIdentity, tmp_path: Path,
              now: datetime) -> tuple[Path, Path, int]:
    expiry = int(now.timestamp()) + 3600
    bundle = collect_bundle(SimulatedPlatform(sim, MEASUREMENT), key_config(), expiry,
                            b"\x01\x02")
    path = tmp_path / "evidence.bin"
    path.write_bytes(bundle.encode())
    roots = tmp_path / "simulated-roots.pem"
    roots.write_bytes(sim.roots_pem())
    return path, roots, expiry


def test_simulated_bundle_refused_by_default(sim_files: tuple[Path, Path, int]) -> None:
    bundle, _, _ = sim_files
    rc, out, err = _run(["attest", "verify", str(bundle)])
    assert rc == 1
    assert out.startswith("REFUSED: SimulatedPlatformNotAllowedError:")
    assert "WARNING" not in err


def test_simulated_bundle_with_explicit_root(sim_files: tuple[Path, Path, int]) -> None:
    bundle, roots, expiry = sim_files
    rc, out, err = _run(["attest", "verify", str(bundle), "--allow-simulated-root", str(roots),
                         "--nonce", "0102"])
    assert rc == 0, out + err
    assert "WARNING" in err and "SIMULATED" in err  # the loud warning
    assert "platform:        simulated (SIMULATED: NOT A TEE" in out
    assert f"measurement:     {MEASUREMENT.hex()}" in out
    assert f"(unix {expiry})" in out
    assert "nonce:           0102" in out
    assert "key config:      key_id=1 kem=0x0020 (X25519) public_key=" in out
    assert "gpu:             4 measurement block(s)" in out
    assert "evidence digest: sha256:" in out
    # nonce mismatch, expiry, measurement policy
    rc, out, _ = _run(["attest", "verify", str(bundle), "--allow-simulated-root", str(roots),
                       "--nonce", "ff"])
    assert rc == 1 and out.startswith("REFUSED: NonceMismatchError:")
    later = datetime.fromtimestamp(expiry + 1).astimezone().isoformat()
    rc, out, _ = _run(["attest", "verify", str(bundle), "--allow-simulated-root", str(roots),
                       "--at", later])
    assert rc == 1 and out.startswith("REFUSED: KeyExpiredError:")
    pol = bundle.parent / "p.toml"
    pol.write_text(f'allowed_measurements = ["{"00" * 48}"]\n')
    rc, out, _ = _run(["attest", "verify", str(bundle), "--allow-simulated-root", str(roots),
                       "--policy", str(pol)])
    assert rc == 1 and out.startswith("REFUSED: MeasurementNotAllowedError:")
    rc, _, err = _run(["attest", "verify", str(bundle), "--vcek", str(VCEK)])
    assert rc == 2 and "a bundle carries its chain" in err


def test_wrong_simulated_root(sim_files: tuple[Path, Path, int], other_sim: SimulatedIdentity,
                              tmp_path: Path) -> None:
    bundle, _, _ = sim_files
    other = tmp_path / "other.pem"
    other.write_bytes(other_sim.roots_pem())
    rc, out, err = _run(["attest", "verify", str(bundle), "--allow-simulated-root", str(other)])
    assert rc == 1 and out.startswith("REFUSED: CertificateChainError:")
    assert "WARNING" in err
    gpu_only = tmp_path / "gpu.pem"
    gpu_only.write_bytes(other_sim.gpu_root.public_bytes(Encoding.PEM))
    rc, _, err = _run(["attest", "verify", str(bundle), "--allow-simulated-root", str(gpu_only)])
    assert rc == 2 and "needs at least one simulated ARK" in err
    notpem = tmp_path / "x.pem"
    notpem.write_text("nothing here")
    rc, _, err = _run(["attest", "verify", str(bundle), "--allow-simulated-root", str(notpem)])
    assert rc == 2 and "not a PEM certificate file" in err


def test_raw_simulated_report(sim: SimulatedIdentity, tmp_path: Path) -> None:
    parts = SimulatedPlatform(sim, MEASUREMENT, gpu=False).get_evidence(bytes(64))
    (tmp_path / "r.bin").write_bytes(parts.cpu_report)
    (tmp_path / "vcek.pem").write_bytes(sim.vcek.public_bytes(Encoding.PEM))
    (tmp_path / "chain.pem").write_bytes(sim.chain_pem())
    (tmp_path / "roots.pem").write_bytes(sim.roots_pem())
    base = ["attest", "verify", str(tmp_path / "r.bin"), "--vcek", str(tmp_path / "vcek.pem")]
    rc, out, err = _run(base)  # default chain: AMD's pinned Milan ASK/ARK
    assert rc == 1 and out.startswith("REFUSED: CertificateChainError:") and err == ""
    rc, out, _ = _run([*base, "--chain", str(tmp_path / "chain.pem")])
    assert rc == 1 and "pinned" in out
    rc, out, err = _run([*base, "--chain", str(tmp_path / "chain.pem"),
                         "--allow-simulated-root", str(tmp_path / "roots.pem")])
    assert rc == 0, out
    assert "sev-snp (SIMULATED chain: NOT A TEE" in out and "WARNING" in err


# --------------------------------------------------------------------------------------
# measure
# --------------------------------------------------------------------------------------


def test_measure_simulated(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text("model = 'tiny'\n")
    model = tmp_path / "model.bin"
    model.write_bytes(b"w" * 100)
    rc, out, err = _run(["measure", "--platform", "simulated", "--node-config", str(config),
                         "--model", str(model)])
    assert rc == 0, err
    assert out == measure_simulated(config.read_bytes(), model).hex() + "\n"
    assert len(out.strip()) == 96
    # The defaults are node serve's: a model-free backend measures an empty model file,
    # as a node started with the same options does.
    rc, out, err = _run(["measure", "--backend", "echo", "--node-config", str(config)])
    assert rc == 0, err
    assert out == measure_simulated(config.read_bytes(), Path(os.devnull)).hex() + "\n"
    rc, _, err = _run(["measure", "--platform", "simulated", "--node-config", str(config),
                       "--model", str(tmp_path / "missing")])
    assert rc == 1 and "cannot read the model file" in err


def test_measure_snp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ovmf = tmp_path / "OVMF.fd"
    ovmf.write_bytes(b"o")
    rc, _, err = _run(["measure", "--platform", "sev-snp", "--ovmf", str(ovmf)])
    assert rc == 2 and "--vcpus" in err
    monkeypatch.setitem(sys.modules, "sevsnpmeasure", None)
    monkeypatch.setitem(sys.modules, "sevsnpmeasure.guest", None)
    rc, out, err = _run(["measure", "--platform", "sev-snp", "--ovmf", str(ovmf), "--vcpus",
                         "4", "--vcpu-type", "EPYC-v4", "--append", "console=ttyS0"])
    assert rc == 2 and "needs a kernel" in err
    rc, out, err = _run(["measure", "--platform", "sev-snp", "--ovmf", str(ovmf), "--vcpus",
                         "4", "--vcpu-type", "EPYC-v4"])
    assert rc == 1 and out == "" and "pip install sev-snp-measure" in err


def test_run_verify_defaults_to_stdio(capsys: pytest.CaptureFixture[str],
                                      sim_files: tuple[Path, Path, int]) -> None:
    bundle, roots, _ = sim_files
    args = _main_parser().parse_args(["attest", "verify", str(bundle),
                                      "--allow-simulated-root", str(roots)])
    assert attest_cli.run_verify(args) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("VERIFIED") and "WARNING" in captured.err
    # the time option accepts a zone-less ISO time as UTC
    args = _main_parser().parse_args(["attest", "verify", str(bundle), "--at",
                                      "2025-06-01T00:00:00"])
    assert args.at.utcoffset() == timedelta(0)
