"""RFC 9497 VOPRF(P-384, SHA-384), mode 0x01: the ``voprf`` package and the test reference.

What the ``voprf`` package (0.2.0) lets us check against the appendix A vectors:

* key derivation: ``Evaluator.from_seed(seed, keyInfo).public_key`` == pkSm (byte exact);
* Evaluate: ``evaluate_known_input(Input)`` == Output (byte exact);
* BlindEvaluate on the vector's BlindedElement: the evaluated element == EvaluationElement
  (byte exact); its proof uses the package's own randomness, so it is checked by verifying
  it (with the reference), not by comparing bytes;
* Blind/Finalize: the package's client cannot take the vector's blind, so a fresh blind of
  Input, evaluated by the package or by the reference holding skSm, must finalize to Output.

The reference (``p384_voprf_ref``) reproduces every vector value byte for byte, the proofs
included (given the vector's proof randomness r), batch vector included.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from voprf import p384

from . import p384_voprf_ref as ref

VECTORS = Path(__file__).parent.parent / "vectors/privacypass"
_ALL: list[dict[str, Any]] = json.loads(
    (VECTORS / "rfc9497-ristretto255-SHA512-and-P384-SHA384.json").read_text()
)
SUITE = next(s for s in _ALL if s["identifier"] == "P384-SHA384" and s["mode"] == 1)
SEED = bytes.fromhex(SUITE["seed"])
KEY_INFO = bytes.fromhex(SUITE["keyInfo"])
SK = int(SUITE["skSm"], 16)
PK = bytes.fromhex(SUITE["pkSm"])
CASES: list[dict[str, Any]] = SUITE["vectors"]


def _split(value: str) -> list[bytes]:
    return [bytes.fromhex(x) for x in value.split(",")]


def test_suite_context() -> None:
    assert bytes.fromhex(SUITE["groupDST"]) == ref.HASH_TO_GROUP_DST
    assert SUITE["hash"] == "SHA384"


def test_reference_key_derivation() -> None:
    sk, pk = ref.derive_key_pair(SEED, KEY_INFO)
    assert sk == SK
    assert ref.serialize_element(pk) == PK


@pytest.mark.parametrize("case", CASES, ids=[f"batch{c['Batch']}-{i}" for i, c in enumerate(CASES)])
def test_reference_byte_exact(case: dict[str, Any]) -> None:
    inputs = _split(case["Input"])
    blinds = [int.from_bytes(b, "big") for b in _split(case["Blind"])]
    blinded = [ref.blind(x, b) for x, b in zip(inputs, blinds, strict=True)]
    assert blinded == _split(case["BlindedElement"])
    bl_pts = [ref.deserialize_element(x) for x in blinded]
    ev_pts = [ref.mul(SK, x) for x in bl_pts]
    evaluated = [ref.serialize_element(x) for x in ev_pts]
    assert evaluated == _split(case["EvaluationElement"])
    pk_pt = ref.deserialize_element(PK)
    proof = ref.generate_proof(SK, ref.G, pk_pt, bl_pts, ev_pts, r=int(case["Proof"]["r"], 16))
    assert proof.hex() == case["Proof"]["proof"]
    assert ref.verify_proof(ref.G, pk_pt, bl_pts, ev_pts, proof)
    bad = bytearray(proof)
    bad[-1] ^= 1
    assert not ref.verify_proof(ref.G, pk_pt, bl_pts, ev_pts, bytes(bad))
    outputs = _split(case["Output"])
    if len(inputs) == 1:
        out = ref.finalize(inputs[0], blinds[0], evaluated[0], blinded[0], pk=PK, proof=proof)
        assert out == outputs[0]
    assert [ref.RefIssuerKey(SK).evaluate(x) for x in inputs] == outputs


def test_package_key_derivation() -> None:
    evaluator = p384.Evaluator.from_seed(SEED, KEY_INFO)
    assert evaluator.public_key.serialize() == PK


@pytest.mark.parametrize("case", CASES, ids=[f"batch{c['Batch']}-{i}" for i, c in enumerate(CASES)])
def test_package_against_vectors(case: dict[str, Any]) -> None:
    evaluator = p384.Evaluator.from_seed(SEED, KEY_INFO)
    pk = p384.PublicKey.deserialize(PK)
    pk_pt = ref.deserialize_element(PK)
    inputs = _split(case["Input"])
    outputs = _split(case["Output"])
    for x, blinded, evaluated, output in zip(
        inputs,
        _split(case["BlindedElement"]),
        _split(case["EvaluationElement"]),
        outputs,
        strict=True,
    ):
        # Evaluate
        assert evaluator.evaluate_known_input(x) == output
        # BlindEvaluate on the vector's blinded element: layout proof(96) || element(49)
        vo = evaluator.evaluate(p384.BlindedInput.deserialize(blinded)).serialize()
        assert len(vo) == 145
        assert vo[96:] == evaluated
        assert ref.verify_proof(
            ref.G,
            pk_pt,
            [ref.deserialize_element(blinded)],
            [ref.deserialize_element(evaluated)],
            vo[:96],
        )
        # Blind + BlindEvaluate + Finalize with the package's own blind
        client, blinded_input = p384.Client.blind(x)
        assert client.finalize(evaluator.evaluate(blinded_input), pk) == output
        # ... and with the reference as the server (proof generated with the vector's r)
        client, blinded_input = p384.Client.blind(x)
        ev, proof = ref.RefIssuerKey(SK, proof_r=int(case["Proof"]["r"], 16)).blind_evaluate(
            blinded_input.serialize()
        )
        assert client.finalize(p384.VerifiableOutput.deserialize(proof + ev), pk) == output


def test_package_rejects_bad_proof() -> None:
    evaluator = p384.Evaluator.from_seed(SEED, KEY_INFO)
    pk = p384.PublicKey.deserialize(PK)
    client, blinded_input = p384.Client.blind(b"\x00")
    vo = bytearray(evaluator.evaluate(blinded_input).serialize())
    vo[95] ^= 1  # last byte of s
    with pytest.raises(ValueError):
        client.finalize(p384.VerifiableOutput.deserialize(bytes(vo)), pk)
    other = p384.Evaluator.from_seed(b"\x01" * 32, KEY_INFO)
    with pytest.raises(ValueError):
        client.finalize(other.evaluate(blinded_input), pk)
