"""``privproc attest verify`` and ``privproc measure``.

``run_verify`` prints the verified claims and returns 0, or prints ``REFUSED: <error>:
<reason>`` and returns 1; a usage problem (unreadable file, missing option, bad policy
file) goes to stderr with exit status 2. Passing ``--allow-simulated-root`` prints the
simulated-platform warning to stderr first.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from cryptography import x509

from privproc import clikit
from privproc.attest import evidence, sev_snp
from privproc.attest.errors import AttestationError
from privproc.attest.evidence import (
    MAGIC,
    EvidencePolicy,
    TrustConfig,
    VerifiedClaims,
    policy_from_mapping,
)
from privproc.attest.measure import MeasurementToolError, measure_simulated, measure_snp
from privproc.attest.sev_snp import SIMULATED_PREFIX, SigningKey, VerifiedSnp
from privproc.attest.simulated import warn_simulated
from privproc.errors import PrivprocError
from privproc.tlog.record import format_time

__all__ = [
    "UsageError",
    "configure",
    "configure_measure_parser",
    "configure_verify_parser",
    "run_measure",
    "run_verify",
]


class UsageError(PrivprocError):
    """A command-line input is missing or unusable (exit status 2)."""


def _iso_time(value: str) -> datetime:
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time such as 2025-06-01T00:00:00Z, got {value!r}") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _hex(value: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected hex, got {value!r}") from None


def configure_verify_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``attest verify`` arguments to ``p``."""
    p.add_argument("evidence", type=Path, metavar="BUNDLE_OR_REPORT",
                   help="an evidence bundle, or a raw 0x4A0-byte SEV-SNP report")
    p.add_argument("--vcek", type=Path, metavar="FILE",
                   help="VCEK/VLEK (DER or PEM) for a raw report (required for one)")
    p.add_argument("--chain", type=Path, metavar="FILE",
                   help="ASK/ASVK + ARK PEM for a raw report (default: the pinned ones for "
                        "the report's product)")
    p.add_argument("--policy", type=Path, metavar="FILE",
                   help="TOML policy: allow_debug, max_vmpl, min_tcb.{bootloader,tee,snp,"
                        "microcode,fmc}, allowed_measurements (hex list), report_data (hex), "
                        "require_gpu, gpu_reference, max_key_validity, ...")
    p.add_argument("--at", type=_iso_time, metavar="ISO-TIME",
                   help="verify as of this time (default: now; no zone means UTC)")
    p.add_argument("--nonce", type=_hex, metavar="HEX",
                   help="the client nonce the bundle must carry")
    p.add_argument("--allow-simulated-root", type=Path, action="append", default=[],
                   metavar="FILE", dest="simulated_roots",
                   help="ALSO trust this simulated root PEM (development only: evidence "
                        "signed by it proves no TEE); repeatable")


def configure_measure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``measure`` arguments to ``p``: its defaults are ``node serve``'s, so a
    default node's measurement is ``privproc measure`` with no options."""
    from privproc.node.cli import add_release_options

    p.add_argument("--platform", choices=list(evidence.PLATFORMS),
                   default=evidence.PLATFORM_SIMULATED, help="the platform to measure for")
    sim = p.add_argument_group("simulated platform (the same options as 'node serve')")
    add_release_options(sim)
    sim.add_argument("--code-root", type=Path, metavar="DIR",
                     help="privproc package directory to measure (default: the installed one)")
    snp = p.add_argument_group("sev-snp (needs: pip install sev-snp-measure)")
    snp.add_argument("--ovmf", type=Path, metavar="FILE", help="the OVMF firmware image")
    snp.add_argument("--kernel", type=Path, metavar="FILE", help="the guest kernel")
    snp.add_argument("--initrd", type=Path, metavar="FILE", help="the guest initrd")
    snp.add_argument("--append", metavar="CMDLINE", help="kernel command line")
    snp.add_argument("--vcpus", type=clikit.positive_int, metavar="N", help="guest vCPUs")
    snp.add_argument("--vcpu-type", metavar="TYPE", help="QEMU CPU model, e.g. EPYC-v4")
    snp.add_argument("--guest-features", type=_int_any_base, default=0x1,
                     metavar="VALUE", help="SEV_FEATURES")


def _int_any_base(value: str) -> int:
    try:
        return int(value, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None


def configure(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``privproc attest verify`` and ``privproc measure``."""
    attest = clikit.group(sub, "attest", "Attestation evidence tools.")
    verify = clikit.leaf(attest, "verify",
                         "Verify an evidence bundle or an SEV-SNP report; exit 0/1.", run_verify)
    configure_verify_parser(verify)
    measure = clikit.leaf(sub, "measure", "Compute the launch measurement of a node release.",
                          run_measure)
    configure_measure_parser(measure)


# ---------------------------------------------------------------------------------------
# verify
# ---------------------------------------------------------------------------------------


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc}") from None


def _load_policy(path: Path | None) -> EvidencePolicy:
    if path is None:
        return EvidencePolicy()
    try:
        doc = tomllib.loads(_read(path, "policy").decode("utf-8"))
        return policy_from_mapping(doc)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"policy {path}: {exc}") from None


def _load_simulated_roots(paths: list[Path], err: TextIO) -> list[x509.Certificate]:
    if not paths:
        return []
    warn_simulated(err)
    certs: list[x509.Certificate] = []
    for path in paths:
        try:
            certs.extend(x509.load_pem_x509_certificates(_read(path, "simulated root")))
        except ValueError as exc:
            raise UsageError(f"simulated root {path}: not a PEM certificate file: {exc}") \
                from None
    return certs


def _now(args: argparse.Namespace) -> datetime:
    at: datetime | None = args.at
    return at if at is not None else datetime.now(UTC)


def _print_snp(v: VerifiedSnp, out: TextIO) -> None:
    r = v.report
    pol = r.policy
    flags = ", ".join(f for f, on in (("debug ALLOWED", pol.debug_allowed),
                                      ("debug off", not pol.debug_allowed),
                                      ("SMT allowed", pol.smt_allowed),
                                      ("migration agent", pol.migrate_ma),
                                      ("single socket", pol.single_socket)) if on)
    out.write(f"product:         {v.product}\n")
    out.write(f"signing key:     {v.signing_key.name}\n")
    out.write(f"report version:  {r.version}\n")
    out.write(f"measurement:     {r.measurement.hex()}\n")
    out.write(f"tcb (certified): {v.trusted_tcb}\n")
    out.write(f"guest policy:    {pol.raw:#x} ({flags})\n")
    out.write(f"vmpl:            {r.vmpl}\n")
    out.write(f"firmware:        {r.current_major}.{r.current_minor} build {r.current_build}\n")
    out.write(f"chip id:         {r.chip_id.hex()}\n")
    out.write(f"host data:       {r.host_data.hex()}\n")
    out.write(f"report data:     {r.report_data.hex()}\n")


def _print_claims(c: VerifiedClaims, out: TextIO) -> None:
    out.write("VERIFIED\n")
    plat = (f"{c.platform} (SIMULATED: NOT A TEE, development only)" if c.simulated
            else c.platform)
    out.write(f"platform:        {plat}\n")
    _print_snp(c.snp, out)
    kc = c.ohttp_key_config
    suites = " ".join(f"{s.kdf_id:#06x}/{s.aead_id:#06x}" for s in kc.symmetric)
    out.write(f"key config:      key_id={kc.key_id} kem={kc.kem_id:#06x} ({kc.kem_name}) "
              f"public_key={kc.public_key.hex()} kdf/aead={suites}\n")
    out.write(f"key expiry:      {format_time(c.expiry)} (unix {c.expiry})\n")
    out.write(f"nonce:           {c.nonce.hex() if c.nonce is not None else '(none)'}\n")
    if c.gpu_measurements is None:
        out.write("gpu:             (no GPU evidence)\n")
    else:
        out.write(f"gpu:             {len(c.gpu_measurements)} measurement block(s)\n")
        for index in sorted(c.gpu_measurements):
            out.write(f"gpu measurement {index}: {c.gpu_measurements[index].hex()}\n")
    out.write(f"evidence digest: sha256:{c.evidence_digest.hex()}\n")


def _verify_bundle(args: argparse.Namespace, data: bytes, out: TextIO, err: TextIO) -> None:
    if args.vcek is not None or args.chain is not None:
        raise UsageError("--vcek and --chain apply to raw reports; a bundle carries its chain")
    policy = _load_policy(args.policy)
    sim_roots = _load_simulated_roots(args.simulated_roots, err)
    try:
        trust = TrustConfig.with_simulated_roots(sim_roots) if sim_roots else TrustConfig()
    except ValueError as exc:
        raise UsageError(f"--allow-simulated-root: {exc}") from None
    claims = evidence.verify_bundle(data, policy, trust, _now(args),
                                    expected_nonce=args.nonce)
    _print_claims(claims, out)


def _verify_report(args: argparse.Namespace, data: bytes, out: TextIO, err: TextIO) -> None:
    if args.vcek is None:
        raise UsageError("a raw SEV-SNP report needs --vcek FILE (the VCEK/VLEK that signed "
                         "it; AMD's KDS serves it by chip id and TCB)")
    if args.nonce is not None:
        raise UsageError("--nonce applies to evidence bundles; for a raw report put the "
                         "expected value in the policy's report_data")
    policy = _load_policy(args.policy).snp
    vcek = _read(args.vcek, "VCEK")
    sim_roots = _load_simulated_roots(args.simulated_roots, err)
    sim_arks = [c for c in sim_roots if _is_sim_ark(c)]
    roots = sev_snp.TrustRoots([*sev_snp.amd_trust_roots(), *sim_arks])
    if args.chain is not None:
        chain: bytes | list[x509.Certificate] = _read(args.chain, "chain")
    else:
        report = sev_snp.parse_report(data)
        product = report.product or sev_snp.leaf_product(vcek)
        if product is None:
            raise UsageError("cannot tell the report's product (report v2 and no productName "
                             "in the VCEK): pass --chain with the ASK and ARK")
        key_type = SigningKey.VLEK if report.signing_key is SigningKey.VLEK else SigningKey.VCEK
        chain = [sev_snp.amd_intermediates(product, key_type), sev_snp.amd_ark(product)]
    verified = sev_snp.verify_snp(data, vcek, chain, policy, roots, _now(args))
    out.write("VERIFIED\n")
    plat = ("sev-snp (SIMULATED chain: NOT A TEE, development only)" if verified.simulated
            else "sev-snp")
    out.write(f"platform:        {plat}\n")
    _print_snp(verified, out)


def _is_sim_ark(cert: x509.Certificate) -> bool:
    attrs = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return bool(attrs) and str(attrs[0].value).startswith(SIMULATED_PREFIX + "ARK-")


def run_verify(args: argparse.Namespace, *, out: TextIO | None = None,
               err: TextIO | None = None) -> int:
    """``privproc attest verify``: 0 verified, 1 refused, 2 usage error."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        data = _read(args.evidence, "evidence")
        if data.startswith(MAGIC):
            _verify_bundle(args, data, out, err)
        elif len(data) == sev_snp.REPORT_SIZE:
            _verify_report(args, data, out, err)
        else:
            raise UsageError(
                f"{args.evidence} is neither an evidence bundle (starting with {MAGIC!r}) nor "
                f"a raw {sev_snp.REPORT_SIZE:#x}-byte SEV-SNP report ({len(data)} bytes)")
    except UsageError as exc:
        err.write(f"privproc attest verify: {exc}\n")
        return 2
    except AttestationError as exc:
        out.write(f"REFUSED: {type(exc).__name__}: {exc}\n")
        return 1
    return 0


# ---------------------------------------------------------------------------------------
# measure
# ---------------------------------------------------------------------------------------


def _measure(args: argparse.Namespace) -> bytes:
    if args.platform == evidence.PLATFORM_SIMULATED:
        from privproc.node.cli import release_inputs

        config, model = release_inputs(args)
        return measure_simulated(config, model, args.code_root)
    if args.ovmf is None or args.vcpus is None or args.vcpu_type is None:
        raise UsageError("--platform sev-snp needs --ovmf FILE, --vcpus N and --vcpu-type TYPE")
    try:
        return measure_snp(args.ovmf, args.kernel, args.initrd, args.append, args.vcpus,
                           args.vcpu_type, guest_features=args.guest_features)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def run_measure(args: argparse.Namespace, *, out: TextIO | None = None,
                err: TextIO | None = None) -> int:
    """``privproc measure``: prints the 48-byte measurement as hex; 0 ok, 1 tool error,
    2 usage error."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        digest = _measure(args)
    except UsageError as exc:
        err.write(f"privproc measure: {exc}\n")
        return 2
    except MeasurementToolError as exc:
        err.write(f"privproc measure: {exc}\n")
        return 1
    out.write(digest.hex() + "\n")
    return 0
