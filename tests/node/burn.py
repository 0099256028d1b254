"""Task runners for the worker tests, made inside worker processes by name.

``draft`` selects the behaviour: ``burn`` spins on the CPU forever (a model that never
stops), ``crash`` kills the worker process, ``raise`` raises with the input in the
message, ``input`` refuses the input; anything else answers ``["ok", <pid>]``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from privproc.node.core import TaskInputError
from privproc.wire.inner import Task


class BurnRunner:
    def run(self, task: Task, payload: dict[str, Any]) -> list[str]:
        draft = payload.get("draft")
        if draft == "burn":
            n = 0
            while True:  # a model in native code that ignores every deadline
                n += 1
        if draft == "crash":
            os._exit(3)
        if draft == "raise":
            raise RuntimeError(f"boom {payload}")
        if draft == "input":
            raise TaskInputError("draft refused")
        return ["ok", str(os.getpid())]


def burn_runner(load_seconds: float = 0.0) -> BurnRunner:
    time.sleep(load_seconds)  # loading the model
    return BurnRunner()


def broken_runner() -> BurnRunner:
    raise RuntimeError("the model file is corrupt: SECRET-LOAD-DETAIL")
