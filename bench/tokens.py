"""Privacy Pass token benchmark: privproc next to Cloudflare's privacypass-ts, one core.

For both token types (0x0001 VOPRF P-384/SHA-384, 0x0002 blind RSA 2048) it measures:

* the issuer's private-key operation alone (``blindrsa.blind_sign`` / VOPRF
  ``blind_evaluate`` with its DLEQ proof);
* issuance (``privacypass.issue`` with the issuer key): the private-key operation plus
  parsing and checks, so "issuance within 1.5x of the private-key op" can be read off;
* redemption (``privacypass.verify_token``: challenge digest, key id, authenticator);
* the client's ``begin_issuance`` alone, and the full round begin + issue + finalize;

and the same operations in ``@cloudflare/privacypass-ts`` through
``tests/interop/bench_ts.mjs`` (Node.js, same pinned CPU, libuv pool of one thread), with
the ratio privproc/TS. Without Node.js or tests/interop/node_modules (``npm ci`` there)
the TS column reads n/a. Run with ``make bench`` or ``.venv/bin/python bench/tokens.py``;
``--quick`` measures for less time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib import pin_one_core, rate
from privproc.issuer import keystore
from privproc.wire import blindrsa
from privproc.wire import privacypass as pp

INTEROP = Path(__file__).resolve().parent.parent / "tests" / "interop"
ISSUER_NAME = "issuer.privproc.local"
ORIGINS = ["gateway.example"]
ISSUANCE_TARGET = 1.5  # issuance time / private-key op time
OPS = [
    ("private_op", "issuer private-key op"),
    ("issue", "issue (privacypass.issue)"),
    ("redeem", "redeem (verify_token)"),
    ("client_begin", "client begin_issuance"),
    ("round", "full round: begin + issue + finalize"),
]
PRIVATE_OP_NAME = {
    pp.TOKEN_TYPE_VOPRF: "VOPRF BlindEvaluate + DLEQ proof",
    pp.TOKEN_TYPE_BLIND_RSA: "RSABSSA BlindSign",
}
TYPE_NAME = {pp.TOKEN_TYPE_VOPRF: "0x0001 VOPRF", pp.TOKEN_TYPE_BLIND_RSA: "0x0002 blind RSA"}


def privproc_rates(token_type: int, seconds: float) -> dict[str, float]:
    key = keystore.generate(token_type, int(time.time()))
    issuer_key = key.private
    public = key.token_key  # what a client takes from the issuer directory
    keys = {key.key_id: key.verification_key}
    challenge = pp.TokenChallenge(token_type, ISSUER_NAME, bytes([7]) * 32, ORIGINS)
    request, state = pp.begin_issuance(token_type, public, challenge)
    token = pp.finalize_token(state, pp.issue(issuer_key, request))
    pp.verify_token(token, keys, challenge=challenge)

    private_op: Callable[[], object]
    if isinstance(issuer_key, blindrsa.SigningKey):
        signing_key = issuer_key

        def rsa_private_op() -> object:
            return blindrsa.blind_sign(signing_key, request.blinded_msg)

        private_op = rsa_private_op
    else:
        voprf_key = issuer_key

        def voprf_private_op() -> object:
            return voprf_key.blind_evaluate(request.blinded_msg)

        private_op = voprf_private_op

    def round_trip() -> object:
        req, st = pp.begin_issuance(token_type, public, challenge)
        return pp.finalize_token(st, pp.issue(issuer_key, req))

    return {
        "private_op": rate(private_op, seconds),
        "issue": rate(lambda: pp.issue(issuer_key, request), seconds),
        "redeem": rate(lambda: pp.verify_token(token, keys, challenge=challenge), seconds),
        "client_begin": rate(lambda: pp.begin_issuance(token_type, public, challenge), seconds),
        "round": rate(round_trip, seconds),
    }


def ts_rates(seconds: float) -> tuple[dict[str, Any] | None, str]:
    """privacypass-ts numbers from bench_ts.mjs, or None and why not."""
    node = shutil.which("node")
    if node is None:
        return None, "Node.js not found"
    if not (INTEROP / "node_modules" / "@cloudflare" / "privacypass-ts").is_dir():
        return None, "tests/interop/node_modules missing (run `npm ci` in tests/interop)"
    proc = subprocess.run(
        [node, str(INTEROP / "bench_ts.mjs"), "--seconds", str(seconds)], cwd=INTEROP,
        env={**os.environ, "UV_THREADPOOL_SIZE": "1"}, capture_output=True, text=True,
        timeout=900, check=False,
    )
    if proc.returncode != 0:
        return None, f"bench_ts.mjs failed: {proc.stderr.strip()[-300:]}"
    out: dict[str, Any] = json.loads(proc.stdout)
    versions = out.get("versions", {})
    return out, (f"privacypass-ts {versions.get('privacypass-ts')} (blindrsa-ts "
                 f"{versions.get('blindrsa-ts')}, voprf-ts {versions.get('voprf-ts')}) "
                 f"on Node.js {versions.get('node')}")


def fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="measure about 0.3 s per row")
    args = ap.parse_args()
    seconds = 0.3 if args.quick else 1.5
    where = pin_one_core()
    ours = {t: privproc_rates(t, seconds) for t in (pp.TOKEN_TYPE_VOPRF, pp.TOKEN_TYPE_BLIND_RSA)}
    theirs, ts_note = ts_rates(seconds)

    print(f"Privacy Pass tokens, one core ({where}; {platform.processor() or platform.machine()})")
    print(f"privproc on Python {platform.python_version()}; TS: {ts_note}")
    print()
    print("| token type | operation | privproc ops/s | privacypass-ts ops/s | privproc/TS |")
    print("|---|---|---:|---:|---:|")
    for token_type, rates in ours.items():
        ts = theirs.get(str(token_type), {}) if theirs is not None else {}
        for op, label in OPS:
            name = f"{label} ({PRIVATE_OP_NAME[token_type]})" if op == "private_op" else label
            mine, other = rates[op], ts.get(op)
            ratio = "n/a" if other is None else f"{mine / other:,.2f}x"
            print(f"| {TYPE_NAME[token_type]} | {name} | {fmt(mine)} | {fmt(other)} | {ratio} |")
    print()
    for token_type, rates in ours.items():
        factor = rates["private_op"] / rates["issue"]
        verdict = "yes" if factor <= ISSUANCE_TARGET else "NO"
        print(f"{TYPE_NAME[token_type]}: issuance takes {factor:.2f}x the private-key op "
              f"(target <= {ISSUANCE_TARGET}x): {verdict}")


if __name__ == "__main__":
    main()
