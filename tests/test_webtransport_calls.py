"""Calls over WebTransport in real headless browsers, on real UDP: Chromium and Firefox pages that the server
offers WebTransport (/webtransport.json) talk over it, heard both ways; a WebTransport page and a WebSocket page
share a call and a group room; a page whose UDP is dropped is in its call over the WebSocket; a page whose
connection drops resumes its call over WebTransport; the figures line names the transport.

A page made to lack WebTransport (its window.WebTransport deleted before Start, as in a browser without it)
stands for WebKitGTK, which has none. Each fake microphone plays a tone of its own, so the dominant frequency of
what a page plays says whose voice reached it. Skipped without the browsers, unless DUODUEL_REQUIRE_BROWSER=1
(CI), which fails instead.
"""

from __future__ import annotations

import asyncio

import pytest

import duoduel
from conftest import engines, health
from pages import (
    TONES, Page, room_path, status, wait_hearing, wait_members, wait_status, wait_status_seen, wait_tones,
    without_webtransport,
)

pytestmark = pytest.mark.timeout(180)

TRANSPORT_NAMES = {"webtransport": "WebTransport", "websocket": "WebSocket"}


@pytest.fixture
def config() -> duoduel.Config:
    """WebTransport on, on a free UDP port; rooms of three (group rooms)."""
    return duoduel.Config(host="127.0.0.1", port=0, webtransport=True, webtransport_port=0, room_size=3)


async def start(open_page, person: str, engine: str, path: str = "/", transport: str = "webtransport") -> Page:
    """Open the page as this person (on a page without WebTransport if transport is "websocket"), press Start."""
    page = await open_page(person, engine, path)
    if transport == "websocket":
        await without_webtransport(page)
    await page.click("#start")
    return page


async def wait_over(page: Page, transport: str) -> None:
    """The page's link is of that kind, and its figures line says so ("over WebTransport")."""
    name = TRANSPORT_NAMES[transport]
    await page.wait_for(
        f"() => window.duoduel.link?.kind === '{transport}' && "
        f"document.getElementById('stats').textContent.includes('over {name}')",
        what=f"the call to run over {name}, as the figures line says",
    )


async def call(open_page, first: tuple[str, str, str], second: tuple[str, str, str]) -> tuple[Page, Page]:
    """Two people (person, engine, transport) press Start one after the other; each hears the other."""
    one = await start(open_page, first[0], first[1], transport=first[2])
    await wait_status(one, "Waiting for a partner")
    two = await start(open_page, second[0], second[1], transport=second[2])
    await wait_status(one, "Connected")
    await wait_status(two, "Connected")
    await wait_hearing(one, TONES[second[0]])
    await wait_hearing(two, TONES[first[0]])
    return one, two


@engines("chromium-chromium", "chromium-firefox", "firefox-firefox")
async def test_call_over_webtransport_is_heard_both_ways(open_page, server, engines):
    """Both press Start: the call runs over WebTransport (the figures line says so), each hears the other's voice,
    and the server relays their audio as datagrams."""
    ann, bob = await call(open_page, ("ann", engines[0], "webtransport"), ("bob", engines[1], "webtransport"))
    for page in (ann, bob):
        await wait_over(page, "webtransport")
    endpoint = server.webtransport
    assert len(endpoint.sessions) == 2
    assert endpoint.datagrams_received > 0 and endpoint.datagrams_sent > 0
    assert await status(ann) == await status(bob) == "Connected"


@engines("chromium-chromium", "firefox-chromium", "chromium-webkit")
async def test_webtransport_page_and_websocket_page_share_a_call(open_page, server, engines):
    """A page over WebTransport and one without it (over the WebSocket; WebKitGTK has none of its own) are paired
    and hear each other."""
    ann, bob = await call(open_page, ("ann", engines[0], "webtransport"), ("bob", engines[1], "websocket"))
    await wait_over(ann, "webtransport")
    await wait_over(bob, "websocket")
    assert len(server.webtransport.sessions) == 1


@engines("chromium-chromium-firefox")
async def test_group_room_of_both_transports_hears_everyone(open_page, server, engines):
    """Three in a room, one over the WebSocket and two over WebTransport: each plays both others' tones."""
    ann = await start(open_page, "ann", engines[0], room_path("both-ways"), "websocket")
    await wait_status(ann, "Waiting for others to join")
    bob = await start(open_page, "bob", engines[1], room_path("both-ways"))
    cyd = await start(open_page, "cyd", engines[2], room_path("both-ways"))
    for page in (ann, bob, cyd):
        await wait_status(page, "Connected")
    await wait_members(ann, ["Guest 2", "Guest 3"])
    await wait_tones(ann, "bob", "cyd")
    await wait_tones(bob, "ann", "cyd")
    await wait_tones(cyd, "ann", "bob")
    assert await ann.evaluate("() => window.duoduel.link.kind") == "websocket"
    for page in (bob, cyd):
        assert await page.evaluate("() => window.duoduel.link.kind") == "webtransport"


@engines("chromium-chromium", "chromium-firefox")
async def test_leaving_a_webtransport_page_shows_partner_left_at_once(open_page, server, engines):
    """Bob leaves the page (he goes to another): his session says goodbye (or Firefox closes his connection before
    it could), so Ann's page shows "Partner left" (never "reconnecting", as for a dropped network) and looks for
    someone new; the server holds no place for him."""
    ann, bob = await call(open_page, ("ann", engines[0], "webtransport"), ("bob", engines[1], "webtransport"))
    await wait_over(bob, "webtransport")
    await bob.goto("about:blank")
    await wait_status_seen(ann, "Partner left")
    seen = await ann.evaluate("() => window.__statusLog")
    assert not [text for text in seen if "reconnecting" in text.lower()], f"Ann's page showed {seen}"
    assert (await health(server))["held"] == 0


@engines("chromium-chromium", "firefox-chromium")
async def test_page_whose_udp_is_dropped_talks_over_the_websocket(open_page, server, engines):
    """With every UDP packet to the server dropped (the server reads them and answers none, as behind a firewall),
    Start still brings the call up, over the WebSocket."""
    for listener in server.webtransport.servers:
        listener.datagram_received = lambda data, addr: None  # a black hole: no answer, not even an error
    ann, bob = await call(open_page, ("ann", engines[0], "webtransport"), ("bob", engines[1], "webtransport"))
    for page in (ann, bob):
        await wait_over(page, "websocket")
    assert not server.webtransport.sessions


@engines("chromium-chromium", "firefox-chromium")
async def test_dropped_webtransport_connection_resumes_the_call_over_webtransport(open_page, server, engines):
    """Ann's QUIC connection is cut under her (no close, as a network that went away): her page resumes its place
    over a new WebTransport session, and the two hear each other again; Bob's page never says his partner left."""
    ann = await start(open_page, "ann", engines[0])
    await wait_status(ann, "Waiting for a partner")
    (anns,) = server.webtransport.sessions
    bob = await start(open_page, "bob", engines[1])
    await wait_status(ann, "Connected")
    await wait_hearing(ann, TONES["bob"])
    await wait_hearing(bob, TONES["ann"])
    resumes = (await health(server))["resumes"]
    anns.connection._quic.close(error_code=0, reason_phrase="gone")  # ends the connection, no session close
    anns.connection.transmit()
    await wait_for_health(server, "resumes", resumes + 1)
    await wait_over(ann, "webtransport")
    await wait_hearing(ann, TONES["bob"])
    await wait_hearing(bob, TONES["ann"])
    seen = await bob.evaluate("() => window.__statusLog")
    assert not [text for text in seen if "left" in text], f"Bob's page showed {seen}"
    assert anns not in server.webtransport.sessions


async def wait_for_health(server, key: str, value: int, timeout: float = 15) -> None:
    """Wait until /healthz shows key at value (at least), or fail saying what it shows."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (state := await health(server))[key] < value:
        if loop.time() > deadline:
            raise AssertionError(f"waited {timeout} s for {key} >= {value}: /healthz says {state}")
        await asyncio.sleep(0.1)
