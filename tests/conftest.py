"""What every test shares."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path_factory: pytest.TempPathFactory,
                       monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads or writes the user's own privproc state (``privproc up``'s default
    directory, the client's trust file in it)."""
    state = tmp_path_factory.mktemp("privproc-state")
    monkeypatch.setenv("PRIVPROC_STATE", str(state))
    return state
