from __future__ import annotations

import hashlib

from privproc.tlog.record import ReleaseRecord
from privproc.tlog.sequencer import read_public
from privproc.tlog.storage import LogStorage
from privproc.wire import note

ORIGIN = "log.test.example"
LOG_SIGNER = note.Ed25519Signer(ORIGIN, hashlib.sha256(b"log seed").digest())


def release(i: int) -> bytes:
    return ReleaseRecord(
        measurement=hashlib.sha384(f"m{i}".encode()).digest(),
        model_sha256=hashlib.sha256(b"model").digest(),
        version=f"1.0.{i}",
        source=f"git:{i:08x}",
        time=1_700_000_000 + i,
    ).encode()


def fetcher(storage: LogStorage):  # type: ignore[no-untyped-def]
    from privproc.tlog.client import LogFetchError

    def fetch(path: str) -> bytes:
        data = read_public(storage, path)
        if data is None:
            raise LogFetchError(f"{path}: 404")
        return data

    return fetch
