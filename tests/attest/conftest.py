"""Shared fixtures: simulated platform identities (generated once per session: RSA keys are
slow), OHTTP key configurations, and a verification time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from privproc.attest.simulated import SimulatedIdentity
from privproc.wire import hpke, ohttp

# RSA-2048 keeps the session fast; the verifier accepts any RSA size (AMD's are 4096).
SIM_RSA_BITS = 2048
MEASUREMENT = bytes(range(48))


def key_config(key_id: int = 1, fill: int = 0x42) -> bytes:
    """A valid X25519 OHTTP key configuration (deterministic public key bytes)."""
    suites = (ohttp.SymmetricSuite(hpke.KDF_HKDF_SHA256, 1),
              ohttp.SymmetricSuite(hpke.KDF_HKDF_SHA256, 3))
    return ohttp.KeyConfig(key_id, hpke.KEM_X25519_SHA256, bytes([fill]) * 32, suites).encode()


@pytest.fixture(scope="session")
def sim() -> SimulatedIdentity:
    return SimulatedIdentity.generate(rsa_bits=SIM_RSA_BITS)


@pytest.fixture(scope="session")
def other_sim() -> SimulatedIdentity:
    """A second, unrelated simulated platform (for wrong-root checks)."""
    return SimulatedIdentity.generate(rsa_bits=SIM_RSA_BITS)


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
