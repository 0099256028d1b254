"""The node's test fixtures."""

from __future__ import annotations

import time

import pytest

from privproc.attest.simulated import SimulatedIdentity, SimulatedPlatform
from privproc.node.keys import NodeKeys


@pytest.fixture(scope="module")
def keys() -> NodeKeys:
    """A node key (simulated platform, RSA-2048 roots for speed), rotated once."""
    identity = SimulatedIdentity.generate(rsa_bits=2048)
    k = NodeKeys(SimulatedPlatform(identity, bytes(48), gpu=False), lifetime=3600, grace=5)
    k.rotate(int(time.time()))
    return k
