"""Fetch the public source datasets from their pinned upstream commits into data/raw/, checking SHA-256.

Every file is pinned by repository, commit, path and checksum, so a download is reproducible byte for byte.
Credentialed sets (MedNLI, i2b2-2010, i2b2-2012) and hub-only sets (PMC-LLaMA instructions,
HealthCareMagic-100k) are not fetched here; data/README.md says how to obtain them.

    python -m medtune_utils.download                      # everything, into data/raw/
    python -m medtune_utils.download --source GAD HoC     # a subset
    python -m medtune_utils.download --mirror https://mirror.example.org/medtune/raw
    python -m medtune_utils.download --list               # the manifest: source, file, URL
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm.auto import tqdm

from .io import atomic_path
from .paths import resolve

DEFAULT_DEST = "data/raw"
TIMEOUT_S = 60.0
CHUNK_BYTES = 1 << 20
MAX_BYTES = 64 << 20  # per file; the largest pinned file is 3.4 MB, so anything near this is not the file we pinned
NETWORK_ERRORS = (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException)
NOT_DOWNLOADED = (
    "Not downloaded here: the credentialed sets (MedNLI, i2b2-2010, i2b2-2012) need a data-use agreement, and the "
    "hub-only sets (PMC-LLaMA instructions, HealthCareMagic-100k) are not on GitHub; see data/README.md for how to "
    "obtain them."
)


class DownloadError(RuntimeError):
    """A file could not be fetched."""


class ChecksumError(DownloadError):
    """A fetched file's SHA-256 differs from the manifest."""


class SizeLimitError(DownloadError):
    """A fetched file is larger than its manifest entry allows."""


@dataclass(frozen=True)
class RawFile:
    """One upstream file: where it comes from (repository, commit, path), where it goes (source/filename), its size cap."""

    source: str
    repo: str
    commit: str
    path: str
    filename: str
    sha256: str
    max_bytes: int = MAX_BYTES

    @property
    def url(self) -> str:
        """The canonical URL of the file at its pinned commit."""
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{self.path}"

    def url_from(self, mirror: str | None) -> str:
        """`{mirror}/{source}/{filename}` when a mirror is given, else the canonical URL."""
        return f"{mirror.rstrip('/')}/{self.source}/{self.filename}" if mirror else self.url


BIOMEDBERT = ("BioMedBERT/biomedbert", "9e5e1019d79d07c7aecc4eb49106203af1012663")
KEBIOLM = ("hieunguyen7337/KeBioLM", "bc7c3667c786236252ba5b26b3b921197465b7a3")
PUBMEDQA = ("pubmedqa/pubmedqa", "1cbae8e92f72f20c8d3747cbb3bf5bc53554d997")
CHATDOCTOR = ("Kent0n-Li/ChatDoctor", "e77bd7ebafbffb6d82be3410cd0d4ebebe75a516")


def _files(source: str, upstream: tuple[str, str], folder: str, checksums: dict[str, str]) -> tuple[RawFile, ...]:
    """Manifest entries for files kept under the same name in `folder` of `upstream` (repository, commit)."""
    repo, commit = upstream
    return tuple(RawFile(source, repo, commit, f"{folder}/{name}", name, digest) for name, digest in checksums.items())


MANIFEST: tuple[RawFile, ...] = (
    *_files(
        "NCBI-disease",
        BIOMEDBERT,
        "datasets/NER/NCBI-disease",
        {
            "train.tsv": "26df55fb9da14f52834c7c7238ec30af271aa4e3bbe2256ef96cab2c0a7e159b",
            "devel.tsv": "a91324724fa0783ef3096f060580e6b4e8dfdf83664d48e77951a45b693c0eaa",
            "test.tsv": "ca56aff802f8c8849793e806914636f7c9d8bf03bbd88c66402266289beb3995",
        },
    ),
    *_files(
        "BC5CDR-disease",
        BIOMEDBERT,
        "datasets/NER/BC5CDR-disease",
        {
            "train.tsv": "ed209466f99f192460c8b2079cb9dd688c445ce1f2601c2c141f6a84b4a7edf2",
            "devel.tsv": "405332504d3f6d577f33084494d0916bcdfee789aa1bd954e93a5b79239c2967",
            "test.tsv": "a291f73998031d910dd84ae3c52c744d10ddc44042895056f978c39838bd48b3",
        },
    ),
    *_files(
        "BC5CDR-chem",
        BIOMEDBERT,
        "datasets/NER/BC5CDR-chem",
        {
            "train.tsv": "1272b747a1d64ccfaa21061c515c26e9e1f134e3afd3c2ef14d8cd0697e9a234",
            "devel.tsv": "17a6bc43d459c9dedaedad7990eb44ce0c4789a3a9813104aef9d2f3192c8fd0",
            "test.tsv": "4da9183ad83d0921eaca25ba011871308b9476c14f9b10fba7bfee55a9750649",
        },
    ),
    *_files(
        "BC2GM",
        BIOMEDBERT,
        "datasets/NER/BC2GM",
        {
            "train.tsv": "1f180df262ba11c108bf798eae9d94e2090b51985694eb5acd8e9c544045f9a0",
            "devel.tsv": "634e84223ef02cf231fa4b5a5a256ad581efe1405c5bb31986ac0cf055b64e38",
            "test.tsv": "ea0d230134416109a1feb1ff4169e43b89893ef93b91e392c2534944828b724a",
        },
    ),
    *_files(
        "JNLPBA",
        BIOMEDBERT,
        "datasets/NER/JNLPBA",
        {
            "train.tsv": "b54193c955d91fb7079f53961e72871c9d4522eb28a141f717f14d2e4eb76a42",
            "devel.tsv": "b770901337d10d844c2fd849266f99afb83850035c8f20db8c053b5874912520",
            "test.tsv": "ab07e2323e99f8be522cfe6287191244d94988b0455c08922d1b8dfb6c785d98",
        },
    ),
    *_files(
        "GAD",
        BIOMEDBERT,
        "datasets/RE/GAD/1",
        {
            "train.tsv": "21e3765852a13cf03e6e759e201c5ad2d18b10d3ab05a8ac6bd7510f18f68fec",
            "test.tsv": "68fe2b2bddefac2cd5d35b4bc8a13bceee95ee9a582a623632981e893cdb512e",
        },
    ),
    *_files(
        "HoC",
        KEBIOLM,
        "data/HoC",
        {
            "train.tsv": "48352fe9828a63254c9302d5c9a13abe0167a5016dd1143e7f7e47c0348c9a81",
            "dev.tsv": "c0bae75eab5940db8afd3ac620d391661c826fa1428e38d258c9e730f4358b99",
            "test.tsv": "2e9ffe24c756b126efa2d351a9572ebb671a3473658bc0766d02ec80b9129d48",
        },
    ),
    *_files(
        "PubMedQA",
        PUBMEDQA,
        "data",
        {
            "ori_pqal.json": "8b3276be8942ebbd77f3ddcda12c1749bf0e490045a736fd8438ee40cf37a41d",
            "test_ground_truth.json": "939fe566f09017d13b1ca64d2ddfee0bc2374b366048152997669cccedc44d51",
        },
    ),
    RawFile(
        "ChatDoctor-GenMedGPT-5k",
        *CHATDOCTOR,
        "chatdoctor5k.json",
        "GenMedGPT-5k.json",
        "780c1a6aa67d461359ac220c120134429290b1e340545c3ad8954e1aa235d80f",
    ),
)


def source_names() -> list[str]:
    """The downloadable sources, in manifest order."""
    return list(dict.fromkeys(entry.source for entry in MANIFEST))


def select(sources: Iterable[str] | None = None) -> list[RawFile]:
    """The manifest entries of `sources` (all when None); unknown names raise `ValueError`."""
    if sources is None:
        return list(MANIFEST)
    wanted = set(sources)
    if unknown := sorted(wanted - set(source_names())):
        raise ValueError(f"unknown source(s) {', '.join(unknown)}; known sources: {', '.join(source_names())}")
    return [entry for entry in MANIFEST if entry.source in wanted]


def sha256_of(path: Path) -> str:
    """The hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _describe(exc: BaseException) -> str:
    """A one-line reason for a network error (`URLError` wraps the socket error in `.reason`)."""
    reason = exc.reason if type(exc) is urllib.error.URLError else exc
    return " ".join(str(reason).split()) or type(exc).__name__


def _too_large(url: str, size: int, max_bytes: int) -> SizeLimitError:
    return SizeLimitError(
        f"{url} is larger than the {max_bytes:,}-byte cap for this file ({size:,} bytes or more); not the pinned file: "
        "check the URL or --mirror"
    )


def _stream(url: str, out: BinaryIO, label: str, progress: bool, max_bytes: int = MAX_BYTES) -> str:
    """Copy `url` into `out` with a progress bar, stopping past `max_bytes`; return the SHA-256 of the bytes received."""
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            if total is not None and total > max_bytes:
                raise _too_large(url, total, max_bytes)
            with tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=not progress, leave=False) as bar:
                while chunk := response.read(CHUNK_BYTES):
                    received += len(chunk)
                    if received > max_bytes:
                        raise _too_large(url, received, max_bytes)
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except NETWORK_ERRORS as exc:
        raise DownloadError(
            f"could not download {url}: {_describe(exc)}; retry, pass --mirror URL, or download the file by hand"
        ) from exc
    return digest.hexdigest()


def fetch(entry: RawFile, target: Path, mirror: str | None = None, progress: bool = True) -> Path:
    """Put `entry` at `target` unless a file with the right checksum is already there.

    The bytes go to a temporary file beside `target` and are renamed into place only once the checksum
    matches, so a failure never leaves a partial or bad file and never touches an existing one.
    """
    if target.is_file() and sha256_of(target) == entry.sha256:
        return target
    url = entry.url_from(mirror)
    with atomic_path(target) as tmp, tmp.open("wb") as fh:
        actual = _stream(url, fh, f"{entry.source}/{entry.filename}", progress, entry.max_bytes)
        if actual != entry.sha256:
            raise ChecksumError(f"checksum mismatch for {url}: expected sha256 {entry.sha256}, got {actual}")
    return target


def download(
    dest: str | os.PathLike[str] = DEFAULT_DEST,
    sources: Iterable[str] | None = None,
    mirror: str | None = None,
    progress: bool = True,
) -> list[Path]:
    """Fetch the selected sources into `dest/<source>/<filename>`; return the paths of all selected files."""
    root = resolve(dest)
    return [fetch(entry, root / entry.source / entry.filename, mirror, progress) for entry in select(sources)]


def _parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m medtune_utils.download",
        description="Download the public source datasets at their pinned commits and verify their SHA-256.",
        epilog=NOT_DOWNLOADED,
    )
    parser.add_argument("--dest", default=DEFAULT_DEST, help="target folder, relative to the repo root (default: %(default)s)")
    parser.add_argument("--source", nargs="+", choices=source_names(), metavar="NAME", help="only these sources (default: all)")
    parser.add_argument("--mirror", metavar="URL", help="base URL laid out as {URL}/{source}/{filename}, used instead of GitHub")
    parser.add_argument("--list", action="store_true", help="print the manifest (source, file, URL) and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        for entry in select(args.source):
            print(f"{entry.source:<24} {entry.filename:<23} {entry.url_from(args.mirror)}")
        return 0
    try:
        paths = download(args.dest, args.source, args.mirror)
    except DownloadError as exc:
        parser.exit(1, f"error: {exc}\n")
    print(f"{len(paths)} files verified in {resolve(args.dest)}")
    print(NOT_DOWNLOADED)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
