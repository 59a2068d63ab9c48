"""The page's links in real browsers against real servers (tests/wt_harness.py's echo, no lobby): Chromium and
Firefox open WebTransport with the certificate's hash from a page served over plain http://localhost and carry
control lines and datagrams both ways; the chooser takes WebTransport where it opens, and the WebSocket where
UDP is dropped, the session is refused, or the browser has no WebTransport (WebKitGTK).

Skipped without the browsers, unless DUODUEL_REQUIRE_BROWSER=1 (CI), which fails instead.
"""

from __future__ import annotations

import pytest

from conftest import require
from pages import MISSING, Browsers, Page
from wt_harness import echo_server

WITH_WEBTRANSPORT = ["chromium", "firefox"]
FRAMES = 50

pytestmark = pytest.mark.timeout(90)

# Installs window.t: the events a link delivers, and openWith(how) to open one ("webtransport": the link
# alone; "chooser": openLink, as the page does). The WebSocket link is a minimal one of the same shape.
SETUP_JS = """async () => {
  const transport = await import('/transport.js');
  const { openWebTransportLink } = await import('/webtransport-link.js');
  const openWebSocketLink = (url, h) => {
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => h.onOpen();
    ws.onmessage = (e) => (typeof e.data === 'string' ? h.onText(e.data) : h.onAudio(e.data));
    ws.onclose = (e) => h.onClose({ code: e.code, reason: e.reason });
    return {
      kind: 'websocket',
      sendText: (text) => ws.send(text),
      sendAudio: (buffer) => { ws.send(buffer); return true; },
      close: (code, reason) => ws.close(code, reason),
    };
  };
  const t = window.t = { events: [], texts: [], audio: [], closed: null, link: null, started: 0, openedAt: null };
  const handlers = {
    onOpen: () => { t.openedAt = performance.now(); t.events.push('open'); },
    onText: (text) => t.texts.push(JSON.parse(text)),
    onAudio: (buffer) => t.audio.push(Array.from(new Uint8Array(buffer))),
    onClose: (event) => { t.closed = event; t.events.push('close'); },
  };
  t.openWith = async (how) => {
    t.started = performance.now();
    const offer = await transport.fetchOffer();
    const webSocketUrl = `ws://${location.host}/ws?room=abc`;
    if (how === 'webtransport') {
      const url = transport.webTransportUrl(webSocketUrl, offer);
      t.link = openWebTransportLink(url, handlers, { certificateHashes: offer.certificateHashes });
    } else {
      t.link = transport.openLink({ webSocketUrl, offer, openWebSocketLink }, handlers);
    }
  };
  t.sendFrames = async (count) => {
    const sent = [];
    for (let i = 0; i < count; i++) {
      sent.push(t.link.sendAudio(new Uint8Array(120).fill(i).buffer));
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return sent;
  };
  return typeof WebTransport === 'function';
}"""


async def open_at(browsers: Browsers, engine: str, origin: str) -> tuple[Page, bool]:
    """A browser of that engine at the harness's blank page, with window.t set up; and whether it has WebTransport."""
    require(MISSING[engine]())
    page = await browsers.launch("ann", engine, 440.0)
    await page.goto(origin + "/")
    return page, await page.evaluate(SETUP_JS)


async def opened(page: Page) -> None:
    await page.wait_for("() => t.events.includes('open') || t.closed", what="the link to open")
    assert await page.evaluate("() => t.events") == ["open"], await page.evaluate("() => t.closed")


@pytest.mark.parametrize("engine", WITH_WEBTRANSPORT)
async def test_webtransport_link_carries_lines_and_datagrams_both_ways(browsers, engine):
    """Over a session opened with the certificate's hash from a plain-HTTP localhost page, control lines and
    audio datagrams go to the server and come back unchanged."""
    async with echo_server("localhost") as served:
        page, has_webtransport = await open_at(browsers, engine, served.origin)
        assert has_webtransport
        await page.evaluate("() => t.openWith('webtransport')")
        await opened(page)
        assert await page.evaluate("() => t.link.kind") == "webtransport"
        await page.evaluate("() => { for (const t_ of [1, 2, 3]) t.link.sendText(JSON.stringify({type: 'ping', t: t_})); }")
        await page.wait_for("() => t.texts.length === 3", what="three answers")
        assert [text["got"]["t"] for text in await page.evaluate("() => t.texts")] == [1, 2, 3]
        assert await page.evaluate("(n) => t.sendFrames(n)", FRAMES) == [True] * FRAMES
        await page.wait_for(f"() => t.audio.length >= {FRAMES}", what=f"{FRAMES} datagrams back")
        audio = await page.evaluate("() => t.audio")
        assert sorted(frame[0] for frame in audio) == list(range(FRAMES))
        assert all(frame == [frame[0]] * 120 for frame in audio)


@pytest.mark.parametrize("engine", WITH_WEBTRANSPORT)
async def test_server_close_reaches_the_page_link(browsers, engine):
    """The code and reason the server closes a session with are what the page's onClose gets."""
    async with echo_server("localhost") as served:
        page, _ = await open_at(browsers, engine, served.origin)
        await page.evaluate("() => t.openWith('webtransport')")
        await opened(page)
        await page.evaluate("() => t.link.sendText(JSON.stringify({type: 'close', code: 1008, reason: 'too many messages'}))")
        await page.wait_for("() => t.closed", what="the close")
        assert await page.evaluate("() => t.closed") == {"code": 1008, "reason": "too many messages"}
        assert await page.evaluate("() => t.link.sendAudio(new ArrayBuffer(10))") is False


@pytest.mark.parametrize("engine", WITH_WEBTRANSPORT)
async def test_chooser_takes_webtransport_where_it_opens(browsers, engine):
    """Offered by the server and present in the browser, WebTransport carries the link."""
    async with echo_server("localhost") as served:
        page, _ = await open_at(browsers, engine, served.origin)
        await page.evaluate("() => t.openWith('chooser')")
        await opened(page)
        assert await page.evaluate("() => t.link.kind") == "webtransport"
        assert len(served.endpoint.sessions) == 1


@pytest.mark.parametrize("engine", WITH_WEBTRANSPORT)
async def test_chooser_falls_back_to_the_websocket_when_udp_is_dropped(browsers, engine):
    """Behind a firewall that drops UDP (no answer at all), the WebSocket is open and working within 2 s."""
    async with echo_server("localhost", udp="blocked") as served:
        page, _ = await open_at(browsers, engine, served.origin)
        await page.evaluate("() => t.openWith('chooser')")
        await opened(page)
        assert await page.evaluate("() => t.link.kind") == "websocket"
        took = await page.evaluate("() => t.openedAt - t.started")
        assert took < 2000, f"the WebSocket opened {took:.0f} ms after the attempt began"
        await page.evaluate("() => t.link.sendText(JSON.stringify({type: 'ping', t: 7}))")
        await page.wait_for("() => t.texts.length === 1", what="an answer over the WebSocket")


@pytest.mark.parametrize("engine", WITH_WEBTRANSPORT)
async def test_chooser_falls_back_at_once_when_the_session_is_refused(browsers, engine):
    """A session the server refuses gives way to the WebSocket without waiting out the head start."""
    async with echo_server("localhost", udp="refused") as served:
        page, _ = await open_at(browsers, engine, served.origin)
        await page.evaluate("() => t.openWith('chooser')")
        await opened(page)
        assert await page.evaluate("() => t.link.kind") == "websocket"


async def test_chooser_uses_the_websocket_where_webtransport_is_absent(browsers):
    """WebKitGTK has no WebTransport: the link is the WebSocket, at once."""
    async with echo_server("localhost") as served:
        page, has_webtransport = await open_at(browsers, "webkit", served.origin)
        assert not has_webtransport
        await page.evaluate("() => t.openWith('chooser')")
        await opened(page)
        assert await page.evaluate("() => t.link.kind") == "websocket"
        assert served.endpoint.sessions == set()
