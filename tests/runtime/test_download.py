"""Downloads: every redirect hop is held to the first URL's rule, checked before it is connected to."""

from __future__ import annotations

import http.server
import socket
import threading

import pytest

from p2ptools.runtime import download as D


@pytest.fixture
def redirector():
    """A server on 127.0.0.1: /file answers b"payload"; /to/<url> redirects (302) to <url>."""
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            requests.append(self.path)
            if self.path.startswith("/to/"):
                self.send_response(302)
                self.send_header("Location", self.path[len("/to/"):])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = b"payload"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def lookups(monkeypatch):
    """The host names looked up (a lookup of anything but this machine fails at once: no network in tests)."""
    seen: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        seen.append(host)
        if host not in ("127.0.0.1", "localhost"):
            raise socket.gaierror(socket.EAI_NONAME, "not looked up in tests")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return seen


def test_a_redirect_to_plain_http_elsewhere_is_refused_without_connecting(redirector, lookups, tmp_path):
    base, requests = redirector
    part = tmp_path / "dl" / ".x.part"
    with pytest.raises(D.DownloadFailed) as err:
        D.fetch(f"{base}/to/http://example.invalid/x.pth", part, progress=False)
    msg = str(err.value)
    assert "refused a redirect" in msg and "http://example.invalid/x.pth" in msg and "\n" not in msg
    assert "example.invalid" not in lookups  # never looked up, never connected to
    assert requests == ["/to/http://example.invalid/x.pth"]
    assert sorted(p.name for p in part.parent.iterdir()) == []  # no part file, no temporary file


def test_a_redirect_within_this_machine_is_followed(redirector, lookups, tmp_path):
    base, requests = redirector
    part = tmp_path / ".x.part"
    D.fetch(f"{base}/to/{base}/file", part, progress=False)
    assert part.read_bytes() == b"payload" and requests == [f"/to/{base}/file", "/file"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".x.part"]


@pytest.mark.parametrize("first, hop, allowed", [
    ("https://a.example/x", "http://b.example/x", False),
    ("https://a.example/x", "https://b.example/x", True),
    ("http://127.0.0.1:8000/x", "http://b.example/x", False),
    ("http://127.0.0.1:8000/x", "http://localhost:9/x", True),
    ("https://a.example/x", "file:///etc/passwd", False),
    ("http://mirror.example/x", "ftp://b.example/x", False),
    ("http://mirror.example/x", "http://b.example/x", True),  # a plain-http mirror the user chose: its own rule
])
def test_each_hop_is_held_to_the_first_urls_rule(first, hop, allowed):
    import urllib.request

    handler = D._CheckedRedirects(D.trusted_transport(first))

    class Closed:
        def close(self):
            pass

    call = lambda: handler.redirect_request(urllib.request.Request(first), Closed(), 302, "Found", {}, hop)  # noqa: E731
    if allowed:
        assert call().full_url == hop
    else:
        with pytest.raises(D.UnsafeRedirect, match="refused a redirect"):
            call()


def test_a_download_larger_than_expected_is_stopped(redirector, tmp_path):
    base, _ = redirector
    part = tmp_path / ".x.part"
    with pytest.raises(D.DownloadFailed, match="announces 7 bytes; at most 3"):
        D.fetch(f"{base}/file", part, progress=False, max_bytes=3)
    assert list(tmp_path.iterdir()) == []
