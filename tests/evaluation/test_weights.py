"""Weights found on disk or downloaded into torch hub's cache, from a local HTTP server only."""

from __future__ import annotations

import hashlib
import socket

import pytest
import torch
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.evaluation import weights as W


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A test file in the registry (a real state dict), an empty torch hub cache, downloads allowed."""
    good = tmp_path / "good.pth"
    torch.save({"w": torch.arange(6.0)}, good)
    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    spec = W.WeightsFile("test-weights.pth", "a test file", "http://127.0.0.1:9/never-used", digest)
    monkeypatch.setitem(W.KNOWN_WEIGHTS, spec.name, spec)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("P2PTOOLS_WEIGHTS", raising=False)
    monkeypatch.setenv("P2PTOOLS_OFFLINE", "0")
    return spec, good


def _cache(tmp_path):
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_download_on_first_use_then_from_cache(server, registry, tmp_path, monkeypatch):
    base, served, requests = server
    spec, good = registry
    (served / spec.name).write_bytes(good.read_bytes())
    monkeypatch.setenv("P2PTOOLS_WEIGHTS_URL", base)
    path = W.find_weights(spec.name)
    assert path == tmp_path / "torch" / "hub" / "checkpoints" / spec.name
    assert torch.equal(W.load_state_dict(path)["w"], torch.arange(6.0))
    assert requests == [f"/{spec.name}"] and _cache(tmp_path) == [spec.name]
    assert W.find_weights(spec.name) == path and len(requests) == 1  # the second use is from the cache


def test_wrong_file_leaves_nothing_and_says_both_checksums(server, registry, tmp_path, monkeypatch):
    base, served, _ = server
    spec, _ = registry
    (served / spec.name).write_bytes(b"not the weights")
    monkeypatch.setenv("P2PTOOLS_WEIGHTS_URL", base)
    with pytest.raises(W.WeightsDownloadError) as err:
        W.find_weights(spec.name)
    msg = str(err.value)
    assert f"{base}/{spec.name}" in msg and spec.sha256 in msg
    assert hashlib.sha256(b"not the weights").hexdigest() in msg and "put it in" in msg
    assert _cache(tmp_path) == []


def test_server_down_and_missing_file(server, registry, tmp_path, monkeypatch):
    base, _, _ = server
    spec, _ = registry
    monkeypatch.setenv("P2PTOOLS_WEIGHTS_URL", base)  # served folder is empty: 404
    with pytest.raises(W.WeightsDownloadError, match="cannot download from .*HTTP 404"):
        W.find_weights(spec.name)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("P2PTOOLS_WEIGHTS_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(W.WeightsDownloadError, match=f"127.0.0.1:{port}/{spec.name}.*refused"):
        W.find_weights(spec.name)
    assert _cache(tmp_path) == []


def test_offline_never_touches_the_network(server, registry, monkeypatch):
    base, served, requests = server
    spec, good = registry
    (served / spec.name).write_bytes(good.read_bytes())
    monkeypatch.setenv("P2PTOOLS_WEIGHTS_URL", base)
    with pytest.raises(W.WeightsNotFound, match="test-weights.pth .*not found \\(offline"):
        W.find_weights(spec.name, offline=True)
    monkeypatch.setenv("P2PTOOLS_OFFLINE", "1")
    images = served.parent / "images"
    images.mkdir()
    import cv2
    import numpy as np

    cv2.imwrite(str(images / "a.png"), np.zeros((32, 32, 3), np.uint8))
    res = CliRunner().invoke(cli, ["evaluate", "--real", str(images), "--fake", str(images), "--metrics", "lpips",
                                   "--out", str(served.parent / "rep")])
    assert res.exit_code == 1 and "alexnet-owt-7be5be79.pth" in res.output and "offline" in res.output
    monkeypatch.setenv("P2PTOOLS_OFFLINE", "0")
    res = CliRunner().invoke(cli, ["evaluate", "--real", str(images), "--fake", str(images), "--metrics", "vgg",
                                   "--out", str(served.parent / "rep"), "--offline"])
    assert res.exit_code == 1 and "vgg19-dcbb9e9d.pth" in res.output and "offline" in res.output
    assert requests == []


def test_weights_command_lists_and_downloads(server, registry, tmp_path, monkeypatch):
    base, served, requests = server
    spec, good = registry
    (served / spec.name).write_bytes(good.read_bytes())
    monkeypatch.setenv("P2PTOOLS_WEIGHTS_URL", base)
    res = CliRunner().invoke(cli, ["weights"])
    assert res.exit_code == 0, res.output
    lines = {ln.split()[0]: ln for ln in res.output.splitlines()}
    assert set(W.KNOWN_WEIGHTS) <= set(lines) and "missing" in lines[spec.name] and requests == []
    res = CliRunner().invoke(cli, ["weights", "--download", spec.name])
    assert res.exit_code == 0, res.output
    assert "checksum OK" in res.output and requests == [f"/{spec.name}"]
    res = CliRunner().invoke(cli, ["weights", "nope"])
    assert res.exit_code == 1 and "unknown weights file 'nope'" in res.output


def test_a_damaged_file_on_disk_is_never_given_to_torch(registry, tmp_path, monkeypatch):
    spec, good = registry
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / spec.name).write_bytes(good.read_bytes()[:100])  # truncated
    with pytest.raises(W.WeightsChecksumError) as err:
        W.load_state_dict(W.find_weights(spec.name, folder))
    msg = str(err.value)
    assert spec.sha256 in msg and hashlib.sha256(good.read_bytes()[:100]).hexdigest() in msg
    assert f"p2ptools weights --download {spec.name}" in msg and "weights_only" not in msg
    res = CliRunner().invoke(cli, ["weights", "--weights-dir", str(folder), spec.name])
    assert "CHECKSUM MISMATCH" in res.output and msg in res.output and "looking in: " + str(folder) in res.output


def test_every_known_file_has_a_full_digest_or_a_safe_transport(monkeypatch):
    for spec in W.KNOWN_WEIGHTS.values():
        assert len(spec.sha256) in (8, 64)
    full = [s for s in W.KNOWN_WEIGHTS.values() if len(s.sha256) == 64]
    assert len(full) == len(W.KNOWN_WEIGHTS)  # every known file, AlexNet included
    prefix_only = W.WeightsFile("x-7be5be79.pth", "a file known by prefix", "https://x.invalid/x.pth", "7be5be79")
    monkeypatch.setenv("P2PTOOLS_WEIGHTS_URL", "http://mirror.invalid/weights")  # plain http, not this machine
    with pytest.raises(W.WeightsDownloadError, match="only a prefix of this file's SHA-256"):
        W.download(prefix_only)


ALEXNET = "alexnet-owt-7be5be79.pth"
PREFIX_TWIN = "7be5be79" + "0" * 56  # the 8 digits AlexNet's name carries, then another file's


@pytest.fixture
def shipped_alexnet(monkeypatch):
    """AlexNet's entry as weights.py ships it (tests/conftest.register_test_weights rewrites the registry
    for the tests that stand random networks in for the real files)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("shipped_weights", W.__file__)
    shipped = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "shipped_weights", shipped)  # its dataclasses look their module up
    spec.loader.exec_module(shipped)
    monkeypatch.setitem(W.KNOWN_WEIGHTS, ALEXNET, shipped.KNOWN_WEIGHTS[ALEXNET])
    return W.KNOWN_WEIGHTS[ALEXNET]


def test_alexnet_is_checked_by_its_full_digest(tmp_path, monkeypatch, shipped_alexnet):
    """A file whose SHA-256 starts like AlexNet's is not AlexNet: on disk it is never given to torch."""
    assert shipped_alexnet.sha256 == "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02"
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / ALEXNET).write_bytes(b"not alexnet")
    monkeypatch.setattr(W, "sha256_of", lambda path: PREFIX_TWIN)  # a digest that shares the 8-digit prefix
    with pytest.raises(W.WeightsChecksumError, match=f"SHA-256 {PREFIX_TWIN}, expected 7be5be791159472b"):
        W.find_weights(ALEXNET, folder)
    assert not W.digest_matches(shipped_alexnet, PREFIX_TWIN)


def test_a_downloaded_alexnet_with_only_the_prefix_right_is_not_kept(server, tmp_path, monkeypatch, shipped_alexnet):
    base, served, requests = server
    (served / ALEXNET).write_bytes(b"not alexnet")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("P2PTOOLS_WEIGHTS_URL", base)
    monkeypatch.setattr(W, "sha256_of", lambda path: PREFIX_TWIN)
    with pytest.raises(W.WeightsDownloadError, match="is not the expected one"):
        W.download(shipped_alexnet, progress=False)
    assert requests == [f"/{ALEXNET}"] and _cache(tmp_path) == []


def test_a_mirror_redirecting_to_plain_http_elsewhere_is_refused(registry, tmp_path, monkeypatch):
    """$P2PTOOLS_WEIGHTS_URL on this machine answers with a redirect to http://example.invalid/: refused
    in one line, and example.invalid is never looked up."""
    import http.server
    import threading

    spec, _ = registry

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(302)
            self.send_header("Location", f"http://example.invalid{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    looked_up = []
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        looked_up.append(host)
        if host != "127.0.0.1":
            raise socket.gaierror(socket.EAI_NONAME, "not looked up in tests")
        return real(host, *args, **kwargs)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setenv("P2PTOOLS_WEIGHTS_URL", f"http://127.0.0.1:{httpd.server_address[1]}")
        with pytest.raises(W.WeightsDownloadError) as err:
            W.find_weights(spec.name)
    finally:
        httpd.shutdown()
        httpd.server_close()
    msg = str(err.value)
    assert f"refused a redirect from http://127.0.0.1:{httpd.server_address[1]}/{spec.name} to " \
           f"http://example.invalid/{spec.name}" in msg and "\n" not in msg
    assert "example.invalid" not in looked_up and _cache(tmp_path) == []
