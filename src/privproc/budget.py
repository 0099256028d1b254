"""The deadline budget: every party waits a little longer than the one it waits for.

A request's time is spent inside out: the node's model, then the gateway waiting for the
node, the relay waiting for the gateway, the client waiting for the relay. Each outer
wait is the inner one plus a margin, so the party that was slow is the one that times
out, and the error names it: a node past its deadline answers a sealed DEADLINE; a
gateway that stops waiting for a node answers a sealed 504 naming the node; a relay that
stops waiting for the gateway answers 504 "gateway timed out"; the client reports that
the relay did not answer in time. These are the defaults of ``privproc node serve
--deadline``, ``privproc gateway --timeout``, ``privproc relay --timeout`` and the SDK's
``timeout``; change one, and keep the order.
"""

from __future__ import annotations

from typing import Final

NODE_DEADLINE: Final = 60.0  # the model's time for one task, queueing included
MARGIN: Final = 10.0
GATEWAY_TIMEOUT: Final = NODE_DEADLINE + MARGIN  # the gateway waiting for a node
RELAY_TIMEOUT: Final = GATEWAY_TIMEOUT + MARGIN  # the relay waiting for the gateway
CLIENT_TIMEOUT: Final = RELAY_TIMEOUT + MARGIN  # the client waiting for the relay
