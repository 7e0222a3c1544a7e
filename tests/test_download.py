"""The dataset downloader, offline: ../shared/data served from a local HTTP server stands in for the mirror."""

from __future__ import annotations

import dataclasses
import functools
import posixpath
import shutil
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from medtune_utils.download import MANIFEST, ChecksumError, DownloadError, SizeLimitError, download, fetch, main, sha256_of
from medtune_utils.tasks import get_task

Server = tuple[str, list[str]]  # base URL, paths requested so far


class _LoggingHandler(SimpleHTTPRequestHandler):
    """Serves a folder, records each requested path, and keeps quiet."""

    def __init__(self, *args, log: list[str], **kwargs) -> None:
        self.log = log
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        self.log.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _NoLengthHandler(_LoggingHandler):
    """Like `_LoggingHandler`, but sends no Content-Length: the body ends when the connection closes."""

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() != "content-length":
            super().send_header(keyword, value)


@pytest.fixture(scope="module")
def serve() -> Iterator[Callable[[Path], Server]]:
    """Start an HTTP server on a free 127.0.0.1 port for a folder; all are shut down at the end."""
    servers: list[ThreadingHTTPServer] = []

    def start(directory: Path, handler_class: type[_LoggingHandler] = _LoggingHandler) -> Server:
        log: list[str] = []
        handler = functools.partial(handler_class, directory=str(directory), log=log)
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", log

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def mirror(serve: Callable[[Path], Server], shared_data: Path) -> Server:
    """The shared data served as a mirror."""
    return serve(shared_data)


@pytest.fixture(scope="module")
def downloaded(mirror: Server, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """Everything downloaded once through the mirror: the destination and the returned paths."""
    dest = tmp_path_factory.mktemp("raw")
    return dest, download(dest, mirror=mirror[0], progress=False)


def _tampered(shared_data: Path, root: Path, source: str, filename: str) -> Path:
    """A copy of one source's folder under `root` in which `filename` has one extra byte."""
    folder = root / source
    shutil.copytree(shared_data / source, folder)
    with (folder / filename).open("ab") as fh:
        fh.write(b"x")
    return root


def test_download_gives_identical_bytes(downloaded: tuple[Path, list[Path]], shared_data: Path) -> None:
    dest, paths = downloaded
    assert paths == [dest / e.source / e.filename for e in MANIFEST]
    for entry, path in zip(MANIFEST, paths, strict=True):
        assert path.read_bytes() == (shared_data / entry.source / entry.filename).read_bytes(), path
    assert not list(dest.rglob("*.part"))


@pytest.mark.parametrize(
    ("name", "split", "count"),
    [
        ("NCBI-disease", "train", 5424),
        ("GAD", "train", 4796),
        ("GAD", "test", 534),
        ("HoC", "train", 12119),
        ("PubMedQA", "test", 500),
    ],
)
def test_downloaded_files_load_with_official_counts(
    downloaded: tuple[Path, list[Path]], name: str, split: str, count: int
) -> None:
    task = get_task(name)
    assert len(task.load(task.find_folder(downloaded[0]), split)) == count


def test_second_call_downloads_nothing(downloaded: tuple[Path, list[Path]], mirror: Server) -> None:
    dest, paths = downloaded
    before = len(mirror[1])
    assert download(dest, mirror=mirror[0], progress=False) == paths
    assert len(mirror[1]) == before


def test_sources_selects_files_under_the_mirror_layout(mirror: Server, tmp_path: Path) -> None:
    before = len(mirror[1])
    paths = download(tmp_path, sources=["GAD"], mirror=mirror[0] + "/", progress=False)
    assert paths == [tmp_path / "GAD" / "train.tsv", tmp_path / "GAD" / "test.tsv"]
    assert mirror[1][before:] == ["/GAD/train.tsv", "/GAD/test.tsv"]


def test_checksum_mismatch_leaves_no_file(serve: Callable[[Path], Server], shared_data: Path, tmp_path: Path) -> None:
    url, _ = serve(_tampered(shared_data, tmp_path / "mirror", "NCBI-disease", "devel.tsv"))
    dest = tmp_path / "raw"
    with pytest.raises(ChecksumError) as err:
        download(dest, sources=["NCBI-disease"], mirror=url, progress=False)
    message = str(err.value)
    entry = next(e for e in MANIFEST if (e.source, e.filename) == ("NCBI-disease", "devel.tsv"))
    assert "\n" not in message
    assert f"{url}/NCBI-disease/devel.tsv" in message and entry.sha256 in message
    assert sha256_of(tmp_path / "mirror" / "NCBI-disease" / "devel.tsv") in message
    assert sorted(p.name for p in (dest / "NCBI-disease").iterdir()) == ["train.tsv"]


def test_good_file_is_kept_and_existing_file_untouched_on_failure(
    serve: Callable[[Path], Server], mirror: Server, shared_data: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "raw"
    download(dest, sources=["NCBI-disease"], mirror=mirror[0], progress=False)
    bad_url, bad_log = serve(_tampered(shared_data, tmp_path / "mirror", "NCBI-disease", "devel.tsv"))
    target = dest / "NCBI-disease" / "devel.tsv"

    download(dest, sources=["NCBI-disease"], mirror=bad_url, progress=False)  # checksums match: nothing fetched
    assert bad_log == []
    assert target.read_bytes() == (shared_data / "NCBI-disease" / "devel.tsv").read_bytes()

    target.write_bytes(b"stale\n")  # a wrong local file is re-fetched, and kept as it was when that fails
    with pytest.raises(ChecksumError):
        download(dest, sources=["NCBI-disease"], mirror=bad_url, progress=False)
    assert bad_log == ["/NCBI-disease/devel.tsv"]
    assert target.read_bytes() == b"stale\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["devel.tsv", "test.tsv", "train.tsv"]


def test_network_error_names_url_and_mirror(serve: Callable[[Path], Server], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    url, _ = serve(tmp_path / "empty")  # every request is a 404
    with pytest.raises(DownloadError) as err:
        download(tmp_path / "raw", sources=["GAD"], mirror=url, progress=False)
    assert not isinstance(err.value, ChecksumError)
    assert f"{url}/GAD/train.tsv" in str(err.value) and "--mirror" in str(err.value) and "\n" not in str(err.value)
    assert not list((tmp_path / "raw" / "GAD").iterdir())


@pytest.mark.parametrize("handler_class", [_LoggingHandler, _NoLengthHandler], ids=["content-length", "no-length"])
def test_file_over_its_size_cap_stops_with_no_file_left(
    serve: Callable[..., Server], shared_data: Path, tmp_path: Path, handler_class: type[_LoggingHandler]
) -> None:
    """A file past its cap stops the download (up front from Content-Length, else while streaming) and leaves nothing."""
    url, _ = serve(shared_data, handler_class)
    entry = dataclasses.replace(next(e for e in MANIFEST if e.source == "GAD"), max_bytes=1000)
    target = tmp_path / "raw" / "GAD" / entry.filename
    with pytest.raises(SizeLimitError) as err:
        fetch(entry, target, mirror=url, progress=False)
    message = str(err.value)
    assert f"{url}/GAD/{entry.filename}" in message and "1,000-byte cap" in message and "\n" not in message
    assert not target.exists() and not list(target.parent.iterdir())


def test_default_cap_leaves_room_for_every_pinned_file(shared_data: Path) -> None:
    for entry in MANIFEST:
        assert (shared_data / entry.source / entry.filename).stat().st_size * 10 < entry.max_bytes


def test_unknown_source_raises_listing_known() -> None:
    with pytest.raises(ValueError, match="NCBI-disease") as err:
        download(sources=["MedNLI"], progress=False)
    assert "MedNLI" in str(err.value)


def test_cli_list_prints_every_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == len(MANIFEST)
    for entry in MANIFEST:
        assert entry.url in out


def test_cli_downloads_through_mirror(mirror: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dest", str(tmp_path), "--source", "PubMedQA", "--mirror", mirror[0]]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path) in out and "data/README.md" in out and "MedNLI" in out
    assert sorted(p.name for p in (tmp_path / "PubMedQA").iterdir()) == ["ori_pqal.json", "test_ground_truth.json"]


def test_cli_reports_download_errors_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--dest", str(tmp_path), "--source", "GAD", "--mirror", "http://127.0.0.1:9"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: could not download http://127.0.0.1:9/GAD/train.tsv") and err.count("\n") == 1


def test_manifest_pins_the_shared_files(shared_data: Path) -> None:
    assert {(e.source, e.filename) for e in MANIFEST} == {
        (p.parent.name, p.name) for p in shared_data.glob("*/*") if p.name != "SOURCE.md"
    }
    for entry in MANIFEST:
        assert sha256_of(shared_data / entry.source / entry.filename) == entry.sha256, entry
        source_md = (shared_data / entry.source / "SOURCE.md").read_text(encoding="utf-8")
        assert entry.repo in source_md and entry.commit in source_md, entry
        assert (posixpath.dirname(entry.path) or entry.path) in source_md, entry
        assert entry.url == f"https://raw.githubusercontent.com/{entry.repo}/{entry.commit}/{entry.path}"
