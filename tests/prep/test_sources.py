"""Remote scenes: list files of URLs read with range requests from a local HTTP server (127.0.0.1)."""

from __future__ import annotations

import functools
import http.server
import os
import re
import threading

import pandas as pd
import pytest
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.prep.sources import RemotePath, read_list
from tests.conftest import shared_path


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler plus ``Range: bytes=a-b`` (206 Partial Content), as object stores serve."""

    log: list[tuple[str, str | None]] = []

    def send_head(self):  # noqa: D102
        rng = self.headers.get("Range")
        self.log.append((self.path, rng))
        path = self.translate_path(self.path)
        if not rng or not os.path.isfile(path):
            return super().send_head()
        m = re.match(r"bytes=(\d+)-(\d*)", rng)
        size = os.path.getsize(path)
        start, end = int(m.group(1)), min(int(m.group(2) or size - 1), size - 1)
        f = open(path, "rb")  # noqa: SIM115 (closed by copyfile's caller)
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self._remaining = end - start + 1
        return _Limited(f, end - start + 1)

    def log_message(self, *args):  # quiet
        pass


class _Limited:
    def __init__(self, f, n):
        self.f, self.n = f, n

    def read(self, size=-1):
        if self.n <= 0:
            return b""
        data = self.f.read(self.n if size < 0 else min(size, self.n))
        self.n -= len(data)
        return data

    def close(self):
        self.f.close()


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    RangeHandler.log = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(RangeHandler, directory=str(served)))
    httpd.handle_error = lambda request, address: None  # GDAL closes connections early (broken pipes)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    httpd.shutdown()
    httpd.server_close()


def test_remote_path_behaves_like_a_path():
    p = RemotePath("https://bucket.example.org/scenes/austin1.tif?x=1")
    assert (p.name, p.stem, p.suffix) == ("austin1.tif", "austin1", ".tif") and str(p).startswith("https://")
    assert RemotePath("/vsis3/b/k/a.tif").stem == "a"


def test_list_of_urls_tiles_like_local_files(server, tmp_path):
    base, served = server
    for name, src in (("atlanta_img.tif", ("spacenet", "sample_geotiff.tif")),
                      ("atlanta_msk.tif", ("spacenet", "sample_fp_mask_from_geojson.tif"))):
        (served / name).write_bytes(shared_path(*src).read_bytes())
    (tmp_path / "local" / "images").mkdir(parents=True)
    (tmp_path / "local" / "masks").mkdir()
    (tmp_path / "local" / "images" / "atlanta.tif").symlink_to(served / "atlanta_img.tif")
    (tmp_path / "local" / "masks" / "atlanta.tif").symlink_to(served / "atlanta_msk.tif")
    # remote: photos by URL (and one that does not exist), masks by URL; paired by stem after renaming
    (served / "img").mkdir()
    (served / "msk").mkdir()
    os.link(served / "atlanta_img.tif", served / "img" / "atlanta.tif")
    os.link(served / "atlanta_msk.tif", served / "msk" / "atlanta.tif")
    (tmp_path / "images.txt").write_text(f"# photos\n{base}/img/atlanta.tif\n{base}/img/missing.tif\n")
    (tmp_path / "masks.txt").write_text(f"{base}/msk/atlanta.tif\n{base}/msk/missing.tif\n")
    assert [p.stem for p in read_list(tmp_path / "images.txt")] == ["atlanta", "missing"]
    local, remote = tmp_path / "out_local", tmp_path / "out_remote"
    args = ["--size", "128", "--split-by", "block", "--block-size", "300", "--block-buffer", "0"]
    assert CliRunner().invoke(cli, ["tile", "--images", str(tmp_path / "local" / "images"), "--masks",
                                    str(tmp_path / "local" / "masks"), str(local), *args]).exit_code == 0
    res = CliRunner().invoke(cli, ["tile", "--images", str(tmp_path / "images.txt"), "--masks",
                                   str(tmp_path / "masks.txt"), str(remote), *args, "--http-retries", "0"])
    assert res.exit_code == 1 and "missing.tif" in res.output and "Traceback" not in res.output  # reported, not fatal
    a, b = pd.read_csv(local / "manifest.csv"), pd.read_csv(remote / "manifest.csv")
    assert b.kept.sum() == a.kept.sum() > 0
    for f in a[a.kept].file:
        assert (local / f).read_bytes() == (remote / f).read_bytes()  # the same bytes
    assert set(b.source) == {f"{base}/img/atlanta.tif"}  # the manifest records the URL
    ranges = [r for p, r in RangeHandler.log if p == "/img/atlanta.tif" and r]
    assert len(ranges) >= 2  # windowed range requests, not one download


def test_tilde_is_expanded_per_entry_wherever_the_list_is(tmp_path):
    from pathlib import Path

    from p2ptools.prep.sources import as_source

    assert as_source("~/scenes/a.tif", tmp_path / "lists") == Path.home() / "scenes" / "a.tif"
    assert as_source("a.tif", tmp_path / "lists") == tmp_path / "lists" / "a.tif"
