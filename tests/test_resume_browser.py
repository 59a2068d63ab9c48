"""A call that survives a cut connection, in real headless browsers (issue 13).

Ann's page comes whole (the page and its /ws) through bench/impair.py; Bob talks to the server directly.
Each fake microphone plays a tone of its own, so the dominant frequency of what a page plays says whose
voice reached it. Mid-call the proxy resets Ann's connection and refuses new ones for a while, as a
network that goes away for a few seconds does: Ann's page reconnects by itself with its resume token.
The pages are tests/pages.py's Page, so an engine is one parameter.
Skipped without Chromium and Playwright, unless DUODUEL_REQUIRE_BROWSER=1 (CI), which fails instead.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

import duoduel
from bench.impair import Impairment
from conftest import Running, engines, health, open_at, running_server
from pages import TONES, Page, forget_status, room_path, wait_hearing, wait_members, wait_status, wait_status_seen, wait_tones

# What Firefox logs (as a "javascript" entry, which tests count as uncaught errors) for a socket that the
# cut link resets or refuses: the network's doing, not the page's.
FIREFOX_SOCKET_FAILURE = re.compile(
    r"(can.t establish a connection to the server|was interrupted while the page was loading).* ws://"
    r"|^The connection to ws://.* was interrupted"
)
SILENT_S = 8.0  # a stall this long makes Ann's page give up its silent socket (after 6 s) and resume
CUT_S = 3.0  # the link refuses Ann's reconnections this long: shorter than the window
SHORT_WINDOW = 1.5  # a server whose window a cut of CUT_S outlasts


async def call_through_link(browsers, running: Running, link: Impairment, engines: tuple[str, str]) -> tuple[Page, Page]:
    """Ann (through the link) waits, Bob (direct) joins; both hear the other's tone."""
    pages = []
    for person, engine, origin in (("ann", engines[0], f"http://127.0.0.1:{link.port}"), ("bob", engines[1], running.origin)):
        page = await open_at(browsers, person, engine, origin + "/")
        await page.click("#start")
        await wait_status(page, "Waiting for a partner" if person == "ann" else "Connected")
        pages.append(page)
    ann, bob = pages
    await wait_status(ann, "Connected")
    await wait_hearing(ann, TONES["bob"])
    await wait_hearing(bob, TONES["ann"])
    return ann, bob


async def same_call_again(ann: Page, bob: Page) -> None:
    """Each page hears the other's tone again, and Bob's page never said that his partner left."""
    await wait_hearing(ann, TONES["bob"])
    await wait_hearing(bob, TONES["ann"])
    seen = await bob.evaluate("() => window.__statusLog")
    assert not [text for text in seen if "left" in text], f"Bob's page showed {seen}"


def forgive_socket_failures(page: Page) -> None:
    """Drop the socket failures the cut caused from the page's error log, so that any other error still fails."""
    if page.engine == "firefox":
        page.firefox.log = [
            entry for entry in page.firefox.log
            if not (entry.type == "javascript" and FIREFOX_SOCKET_FAILURE.search(entry.text))
        ]


@pytest.fixture
async def link(server) -> AsyncIterator[Impairment]:
    """A perfect link in front of the server, until the test cuts it."""
    async with Impairment(server.host, server.port, seed=13) as proxy:
        yield proxy


@engines("chromium-chromium", "firefox-chromium")
async def test_a_call_cut_for_three_seconds_continues_with_the_same_partner(server, link, browsers, engines):
    """The link resets Ann's connection and refuses her for 3 s: Bob's page says "Partner reconnecting…"
    (never "Partner left"), Ann's says "Reconnecting…"; then both are connected again, to each other
    (the server counts one resume), and each hears the other's tone again."""
    ann, bob = await call_through_link(browsers, server, link, engines)
    for page in (ann, bob):
        await forget_status(page)
    assert link.cut(refuse_for=CUT_S) >= 1
    await wait_status_seen(bob, "Partner reconnecting…")
    await wait_status_seen(ann, "Reconnecting…")
    await wait_status(ann, "Connected")
    await wait_status(bob, "Connected")
    await same_call_again(ann, bob)
    state = await health(server)
    assert (state["resumes"], state["held"], state["pairs"]) == (1, 0, 1)
    forgive_socket_failures(ann)


@engines("chromium-chromium")
async def test_a_cut_longer_than_the_window_shows_the_partner_left(browsers, engines):
    """With a 1.5 s window, a 3 s cut outlasts it: Bob's page goes from "Partner reconnecting…" to
    "Partner left", and nobody resumed."""
    config = duoduel.Config(host="127.0.0.1", port=0, resume_window=SHORT_WINDOW)
    async with running_server(config) as running, Impairment(running.host, running.port, seed=13) as link:
        ann, bob = await call_through_link(browsers, running, link, engines)
        await forget_status(bob)
        assert link.cut(refuse_for=CUT_S) >= 1
        await wait_status_seen(bob, "Partner reconnecting…")
        await wait_status_seen(bob, "Partner left")
        assert (await health(running))["resumes"] == 0
        forgive_socket_failures(ann)
        for page in (ann, bob):
            await page.close()


@engines("chromium-chromium")
async def test_a_socket_gone_silent_is_replaced_and_the_call_resumes(server, link, browsers, engines):
    """The link delivers nothing for 8 s but resets nothing, as a half-open connection after a network change:
    Ann's page gives up its silent socket, opens a new one with its token, and when the link flows again the
    server moves the call to it (it never saw a drop, so Bob hears no "Partner reconnecting…"): both are
    connected to each other and hear each other's tone."""
    ann, bob = await call_through_link(browsers, server, link, engines)
    for page in (ann, bob):
        await forget_status(page)
    link.stall(SILENT_S)
    await wait_status_seen(ann, "Reconnecting…")
    await wait_status(ann, "Connected")
    await same_call_again(ann, bob)
    state = await health(server)
    assert (state["resumes"], state["pairs"], state["clients"]) == (1, 1, 2)


@engines("chromium-chromium-chromium")
async def test_a_group_member_cut_for_three_seconds_comes_back_to_the_room(server, link, browsers, engines):
    """Ann (through the link), Bob and Cyd in one group room; the link cuts Ann for 3 s: the others' lists
    mark her as reconnecting (she stays listed, nobody is told she left), then she is back in her slot,
    everyone hears both others again, and the server counts one resume."""
    pages = []
    for person, engine, origin in zip(("ann", "bob", "cyd"), engines,
                                      (f"http://127.0.0.1:{link.port}", server.origin, server.origin)):
        page = await open_at(browsers, person, engine, origin + room_path("group-cut"))
        await page.click("#start")
        await wait_status(page, "Waiting for others" if person == "ann" else "Connected")
        pages.append(page)
    ann, bob, cyd = pages
    await wait_tones(bob, "ann", "cyd")
    assert link.cut(refuse_for=CUT_S) >= 1
    await wait_members(bob, ["Guest 1 (reconnecting…)", "Guest 3"])
    await wait_members(cyd, ["Guest 1 (reconnecting…)", "Guest 2"])
    await wait_members(bob, ["Guest 1", "Guest 3"])
    await wait_members(ann, ["Guest 2", "Guest 3"])
    await wait_tones(ann, "bob", "cyd")
    await wait_tones(bob, "ann", "cyd")
    await wait_tones(cyd, "ann", "bob")
    state = await health(server)
    assert (state["resumes"], state["held"], state["group_members"]) == (1, 0, 3)
    forgive_socket_failures(ann)
