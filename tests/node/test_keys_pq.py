"""The node's attested keys use the hybrid post-quantum KEM, and the evidence binds the
whole key configuration, KEM identifier included."""

from __future__ import annotations

from privproc.attest.evidence import decode_bundle, report_data_for
from privproc.client.node import open_task, seal_task
from privproc.node.keys import NodeKeys
from privproc.wire import hpke, inner, ohttp


def test_node_keys_are_hybrid_and_bound_whole(keys: NodeKeys) -> None:
    current = keys.current
    config = current.key.config
    assert config.kem_id == hpke.KEM_MLKEM768_X25519 and config.kem_name == "MLKEM768-X25519"
    bundle = decode_bundle(current.bundle)
    assert bundle.key_config == config.encode()
    assert ohttp.decode_key_config(bundle.key_config).public_key == config.public_key
    bound = report_data_for(bundle.key_config, bundle.expiry, None, bundle.registration_key)
    assert bundle.report_data == bound
    assert bundle.evidence.cpu_report[0x50:0x90] == bound  # SEV-SNP REPORT_DATA
    # another KEM id, or one bit of the 1,216-byte public key changed, binds differently
    other_kem = bytearray(bundle.key_config)
    other_kem[1:3] = (0x0020).to_bytes(2, "big")
    other_key = bytearray(bundle.key_config)
    other_key[3 + 1215] ^= 1
    for changed in (other_kem, other_key):
        assert report_data_for(bytes(changed), bundle.expiry, None,
                               bundle.registration_key) != bound


def test_a_task_sealed_to_the_hybrid_key_opens_on_the_node(keys: NodeKeys) -> None:
    config = keys.current.key.config
    sealed, nonce, ctx = seal_task(config, inner.Task.WRITE, {"draft": "hi", "tone": "rephrase"})
    assert len(sealed) > ohttp.HEADER_LEN + 1120
    plain, server = keys.accepted(keys.current.created).decapsulate_request(
        sealed, request_label=inner.REQUEST_LABEL, response_label=inner.RESPONSE_LABEL)
    request = inner.InnerRequest.decode(plain)
    assert request.nonce == nonce
    answer = inner.InnerResponse(inner.Status.OK, {"nonce": nonce.hex(), "result": ["ok"]})
    assert open_task(ctx, nonce, server.encapsulate_response(answer.encode())) == ["ok"]
