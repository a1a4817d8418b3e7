"""The MovieLens downloader against a local HTTP server serving a zip built in the test."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import threading
import zipfile

import pytest

from foundrec.data import download as dl
from foundrec.errors import DataError

U_DATA = b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n"
README = b"test archive\n"


def make_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("ml-100k/", b"")
        zf.writestr("ml-100k/u.data", U_DATA)
        zf.writestr("ml-100k/README", README)
        zf.writestr("other/ignored.txt", b"outside the dataset folder")
        zf.writestr("top.txt", b"not in a folder")
    return buffer.getvalue()


class Server:
    """Serves `files` (url path -> bytes) on 127.0.0.1 and records the requested paths."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                outer.requests.append(self.path)
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def archive(monkeypatch) -> bytes:
    data = make_zip()
    md5 = hashlib.md5(data).hexdigest()
    monkeypatch.setattr(dl, "ARCHIVES", {"ml-100k": dl.Archive("ml-100k.zip", md5, "ml-100k")})
    monkeypatch.delenv("FOUNDREC_MOVIELENS_URL", raising=False)
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):  # the server is local
        monkeypatch.delenv(var, raising=False)
    return data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_success(tmp_path, archive):
    progress: list[tuple[int, int]] = []
    with Server({"/mirror/ml-100k.zip": archive}) as server:
        target = dl.download(
            "ml-100k",
            tmp_path / "data",
            base_url=server.url + "/mirror/",
            progress=lambda done, total: progress.append((done, total)),
        )
    assert server.requests == ["/mirror/ml-100k.zip"]
    assert target == tmp_path / "data" / "ml-100k"
    assert (target / "u.data").read_bytes() == U_DATA
    assert (target / "README").read_bytes() == README
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["ml-100k"]  # .part removed, nothing else
    assert sorted(p.name for p in target.iterdir()) == ["README", "u.data"]
    assert progress[-1] == (len(archive), len(archive))


def test_download_keeps_existing_files(tmp_path, archive):
    target = tmp_path / "ml-100k"
    target.mkdir()
    (target / "u.data").write_bytes(b"mine\n")
    with Server({"/ml-100k.zip": archive}) as server:
        dl.download("ml-100k", tmp_path, base_url=server.url)
    assert (target / "u.data").read_bytes() == b"mine\n"
    assert (target / "README").read_bytes() == README


def test_download_checksum_mismatch(tmp_path, archive, monkeypatch):
    monkeypatch.setattr(dl, "ARCHIVES", {"ml-100k": dl.Archive("ml-100k.zip", "0" * 32, "ml-100k")})
    with Server({"/ml-100k.zip": archive}) as server, pytest.raises(DataError) as err:
        dl.download("ml-100k", tmp_path / "data", base_url=server.url)
    message = str(err.value)
    assert message.startswith(f"checksum mismatch for {server.url}/ml-100k.zip: ")
    assert f"md5 {hashlib.md5(archive).hexdigest()}, expected {'0' * 32}" in message
    assert list((tmp_path / "data").iterdir()) == []  # no .part, nothing unpacked


def test_download_404(tmp_path, archive):
    with Server({}) as server, pytest.raises(DataError) as err:
        dl.download("ml-100k", tmp_path, base_url=server.url)
    message = str(err.value)
    assert message.startswith(f"download of {server.url}/ml-100k.zip failed: ")
    assert "404" in message
    assert message.endswith("check the network or set FOUNDREC_MOVIELENS_URL")
    assert list(tmp_path.iterdir()) == []


def test_download_server_unreachable(tmp_path, archive):
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DataError) as err:
        dl.download("ml-100k", tmp_path, base_url=url)
    assert str(err.value).startswith(f"download of {url}/ml-100k.zip failed: ")
    assert list(tmp_path.iterdir()) == []


def test_env_var_mirror_is_honoured(tmp_path, archive, monkeypatch):
    with Server({"/env/ml-100k.zip": archive}) as server:
        monkeypatch.setenv("FOUNDREC_MOVIELENS_URL", server.url + "/env")
        target = dl.download("ml-100k", tmp_path)
    assert server.requests == ["/env/ml-100k.zip"]
    assert (target / "u.data").read_bytes() == U_DATA


def test_explicit_base_url_wins_over_env_var(tmp_path, archive, monkeypatch):
    with Server({"/arg/ml-100k.zip": archive}) as server:
        monkeypatch.setenv("FOUNDREC_MOVIELENS_URL", server.url + "/env")
        dl.download("ml-100k", tmp_path, base_url=server.url + "/arg")
    assert server.requests == ["/arg/ml-100k.zip"]


def test_unknown_archive(tmp_path, archive):
    with pytest.raises(DataError) as err:
        dl.download("ml-25m", tmp_path)
    assert str(err.value) == "no download for 'ml-25m'; downloadable: ml-100k"


def test_published_checksums_are_md5_hex():
    for name, archive in dl.ARCHIVES.items():
        assert archive.file == f"{name}.zip" and archive.folder == name
        assert len(archive.md5) == 32 and int(archive.md5, 16) >= 0


def test_zip_slip_members_are_skipped(tmp_path, monkeypatch):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("ml-100k/u.data", U_DATA)
        zf.writestr("ml-100k/../../evil.txt", b"escape")
    data = buffer.getvalue()
    monkeypatch.setattr(
        dl, "ARCHIVES", {"ml-100k": dl.Archive("ml-100k.zip", hashlib.md5(data).hexdigest(), "ml-100k")}
    )
    with Server({"/ml-100k.zip": data}) as server:
        dl.download("ml-100k", tmp_path / "d", base_url=server.url)
    assert not (tmp_path / "evil.txt").exists()
    assert sorted(p.name for p in (tmp_path / "d" / "ml-100k").iterdir()) == ["u.data"]
