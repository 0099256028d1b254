"""One root exception: every exception class privproc defines is a PrivprocError.

Imports every module under ``privproc`` (``__main__`` modules excluded: importing one
runs it) and checks every exception class whose module is privproc's.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest

import privproc
from privproc import PrivprocError
from privproc.errors import PrivprocError as RootFromModule


def _import_all() -> tuple[list[ModuleType], list[str]]:
    """Every privproc module that imports here, and the ones skipped for a missing
    optional third-party dependency (an import error inside privproc is a failure)."""
    modules: list[ModuleType] = [privproc]
    skipped: list[str] = []

    def onerror(name: str) -> None:
        raise ImportError(f"cannot walk package {name}")

    for info in pkgutil.walk_packages(privproc.__path__, "privproc.", onerror=onerror):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        try:
            modules.append(importlib.import_module(info.name))
        except ImportError as exc:
            missing = exc.name or ""
            if not missing or missing == "privproc" or missing.startswith("privproc."):
                raise
            skipped.append(f"{info.name} (needs {missing})")
    return modules, skipped


MODULES, SKIPPED = _import_all()


def _privproc_exceptions() -> set[type[BaseException]]:
    """Every exception class defined in a privproc module: the module attributes, and
    (for classes not bound at module level) the subclass tree of BaseException."""
    found: set[type[BaseException]] = set()
    for module in MODULES:
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, BaseException)
                    and value.__module__.split(".")[0] == "privproc"):
                found.add(value)
    todo: list[type[BaseException]] = [BaseException]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub.__module__.split(".")[0] == "privproc":
                found.add(sub)
            todo.append(sub)
    return found


def test_root_is_exported() -> None:
    assert PrivprocError is RootFromModule
    assert issubclass(PrivprocError, Exception)
    assert "PrivprocError" in privproc.__all__


def test_modules_imported() -> None:
    names = {m.__name__ for m in MODULES}
    for expected in ("privproc.wire.errors", "privproc.attest.errors", "privproc.client.errors",
                     "privproc.attest.sev_snp.chain", "privproc.wire.privacypass.auth"):
        assert expected in names
    assert len(MODULES) > 50, SKIPPED


def test_every_exception_derives_from_privproc_error() -> None:
    classes = _privproc_exceptions()
    assert len(classes) > 50  # the walk found the hierarchy, not nothing
    outside = sorted(f"{c.__module__}.{c.__qualname__}" for c in classes
                     if not issubclass(c, PrivprocError))
    assert outside == [], f"not a PrivprocError: {outside}"


@pytest.mark.parametrize(("module", "name", "also"), [
    ("privproc.wire.errors", "WireError", None),
    ("privproc.wire.privacypass", "PrivacyPassError", "privproc.wire.errors:WireError"),
    ("privproc.attest.errors", "AttestationError", None),
    ("privproc.attest.errors", "PlatformError", None),
    ("privproc.client.errors", "ClientError", None),
    ("privproc.tlog.client", "LogClientError", None),
    ("privproc.tlog.storage", "StorageError", None),
    ("privproc.tlog.keys", "KeyFileError", None),
    ("privproc.inference.backend", "InferenceError", None),
    ("privproc.issuer.keystore", "IssuerKeyError", None),
    ("privproc.issuer.accounts", "AccountError", None),
    ("privproc.gateway.keystore", "KeyStoreError", None),
    ("privproc.keyring", "KeyRingError", None),
    ("privproc.secrets", "SecretError", None),
    ("privproc.node.worker", "WorkerStartError", None),
    ("privproc.node.core", "TaskInputError", None),
])
def test_layer_roots(module: str, name: str, also: str | None) -> None:
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, PrivprocError)
    if also is not None:
        other_module, other_name = also.split(":")
        assert issubclass(cls, getattr(importlib.import_module(other_module), other_name))


@pytest.mark.parametrize(("module", "name", "builtin"), [
    ("privproc.tlog.record", "RecordError", ValueError),
    ("privproc.tlog.witness", "AddCheckpointError", ValueError),
    ("privproc.client.chat_export", "ChatExportError", ValueError),
    ("privproc.inference.backend", "InvalidRequestError", ValueError),
    ("privproc.attest.measure", "MeasurementToolError", RuntimeError),
])
def test_builtin_bases_kept(module: str, name: str, builtin: type[Exception]) -> None:
    """Callers that catch the built-in exception keep catching these."""
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, PrivprocError)
    assert issubclass(cls, builtin)
    with pytest.raises(builtin):
        raise cls("x")
