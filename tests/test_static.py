"""Serving the page: files, content types, methods, caching headers, and no way out of static/."""

from __future__ import annotations

from pathlib import Path

import pytest

import duoduel
from conftest import ROOT, http_request, running_server

STATIC = ROOT / "static"


async def test_root_serves_the_page(server):
    """GET / is static/index.html, as HTML, with its length."""
    reply = await http_request(server, "/")
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    assert reply.body == (STATIC / "index.html").read_bytes()
    assert int(reply.headers["content-length"]) == len(reply.body)


@pytest.mark.parametrize(
    "path, content_type",
    [
        ("/index.html", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/capture-processor.js", "text/javascript; charset=utf-8"),
    ],
)
async def test_static_files_have_their_content_types(server, path, content_type):
    """Module scripts only run when served as JavaScript: every type is exact."""
    reply = await http_request(server, path)
    assert reply.status == 200
    assert reply.headers["content-type"] == content_type
    assert reply.body == (STATIC / path.lstrip("/")).read_bytes()


async def test_query_and_room_pages_serve_the_page(server):
    """/?room=x and /r/x are the same page; the page reads the room from its address."""
    page = (STATIC / "index.html").read_bytes()
    for target in ("/?room=abc", "/r/abc", "/r/A-b_9", "/index.html?a=b&spam=eggs"):
        reply = await http_request(server, target)
        assert (reply.status, reply.body) == (200, page), target


async def test_head_has_the_headers_and_no_body(server):
    """HEAD says what GET would send, without sending it."""
    reply = await http_request(server, "/app.js", method="HEAD")
    assert reply.status == 200
    assert int(reply.headers["content-length"]) == (STATIC / "app.js").stat().st_size
    assert reply.body == b""


async def test_missing_file_is_404(server):
    reply = await http_request(server, "/nothing-here.js")
    assert reply.status == 404
    assert reply.body == b"Not found.\n"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "TRACE"])
async def test_other_methods_are_405(server, method):
    """Only GET and HEAD are served, and the answer says so."""
    reply = await http_request(server, "/", method=method, headers={"Content-Length": "0"})
    assert reply.status == 405
    assert reply.headers["allow"] == "GET, HEAD"


async def test_page_carries_security_headers(server):
    """The page may only run its own scripts and talk to its own server."""
    reply = await http_request(server, "/")
    policy = reply.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
    assert f"connect-src 'self' ws://{server.host}:{server.port} wss://{server.host}:{server.port}" in policy
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["referrer-policy"] == "no-referrer"
    assert reply.headers["permissions-policy"] == "microphone=(self)"


async def test_hostile_host_header_is_not_echoed_into_the_policy(server):
    """A Host header with policy syntax in it cannot widen connect-src."""
    reply = await http_request(server, "/", headers={"Host": "evil; script-src *"})
    assert "evil" not in reply.headers.get("content-security-policy", "")


async def test_unchanged_file_is_answered_304(server):
    """A browser that has the current copy gets 304 and no body."""
    first = await http_request(server, "/style.css")
    etag = first.headers["etag"]
    assert first.headers["last-modified"]
    again = await http_request(server, "/style.css", headers={"If-None-Match": etag})
    assert again.status == 304
    assert again.body == b""
    stale = await http_request(server, "/style.css", headers={"If-None-Match": '"old"'})
    assert stale.status == 200


TRAVERSALS = [
    "/../duoduel.py",
    "/%2e%2e/duoduel.py",
    "/%2E%2E/duoduel.py",
    "/..%2fduoduel.py",
    "/%2e%2e%2fduoduel.py",
    "/..%5cduoduel.py",
    "/%5c..%5cduoduel.py",
    "/..\\duoduel.py",
    "/static/../duoduel.py",
    "/x/../../duoduel.py",
    "//etc/passwd",
    "/%2fetc%2fpasswd",
    "/%2Fetc/passwd",
    "/etc/passwd",
    "/index.html%00.js",
    "/%00",
    "/c:c:c:foo/index.html",
    "/C:%5cWindows%5cwin.ini",
    "/index.html/",
    "/.%2e/duoduel.py",
    "/%252e%252e/duoduel.py",
    "/%c0%ae%c0%ae/duoduel.py",
    "/r/../../duoduel.py",
]


@pytest.mark.parametrize("target", TRAVERSALS)
async def test_no_path_leads_out_of_static(server, target):
    """Whatever the spelling, nothing outside static/ is served (and nothing crashes)."""
    reply = await http_request(server, target)
    assert reply.status in (400, 404), reply.status
    assert b"duoduel" not in reply.body and b"root:" not in reply.body


@pytest.mark.parametrize("target", TRAVERSALS)
def test_resolve_static_refuses_traversals(target):
    """The resolver itself, without sockets: every spelling resolves to nothing."""
    assert duoduel.resolve_static(STATIC, target) is None


@pytest.mark.parametrize(
    "target, expected",
    [
        ("/", "index.html"),
        ("/index.html", "index.html"),
        ("/r/room-1", "index.html"),
        ("/app.js", "app.js"),
        ("/%61pp.js", "app.js"),
        ("/./app.js", "app.js"),
    ],
)
def test_resolve_static_finds_the_files(target, expected):
    assert duoduel.resolve_static(STATIC, target) == (STATIC / expected).resolve()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A static folder with a symlink that leads out of it, and a secret beside it."""
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<!doctype html><title>t</title>")
    (tmp_path / "secret.txt").write_text("secret")
    (static / "escape.txt").symlink_to(tmp_path / "secret.txt")
    (static / "up").symlink_to(tmp_path)
    (static / ".hidden.txt").write_text("hidden")
    return static


def test_symlinks_out_of_static_are_not_followed(tree):
    """A link inside static/ to a file outside is refused (gh-81054: resolve, then check)."""
    assert duoduel.resolve_static(tree, "/escape.txt") is None
    assert duoduel.resolve_static(tree, "/up/secret.txt") is None
    assert duoduel.resolve_static(tree, "/.hidden.txt") is None
    assert duoduel.resolve_static(tree, "/index.html") == (tree / "index.html").resolve()


async def test_symlink_out_of_static_is_404_over_http(tree):
    """The same, through a server started with --static pointing at that folder."""
    config = duoduel.Config(host="127.0.0.1", port=0, static_dir=tree)
    async with running_server(config) as running:
        assert (await http_request(running, "/escape.txt")).status == 404
        assert (await http_request(running, "/up/secret.txt")).status == 404
        assert (await http_request(running, "/")).status == 200


async def test_files_of_unknown_type_are_not_served(tree):
    """A file with a suffix we have no content type for is 404, never a 500 or a guess."""
    (tree / "tool.py").write_text("print('hi')")
    config = duoduel.Config(host="127.0.0.1", port=0, static_dir=tree)
    async with running_server(config) as running:
        reply = await http_request(running, "/tool.py")
        assert reply.status == 404 and b"print" not in reply.body
