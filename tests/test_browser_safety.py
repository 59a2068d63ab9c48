"""Block and report on the real page, in Chromium and Firefox: the confirm, what each side sees, and that the two
never meet again, reloads included (the id cookie set by the page's first load reaches every handshake).

Skipped without the browsers unless DUODUEL_REQUIRE_BROWSER=1 (CI), which fails instead.
"""

from __future__ import annotations

import asyncio
import json

import duoduel
import pytest
from conftest import ROOT, engines, health, run_command, until
from core.identity import TOKEN_SECONDS
from pages import TONES, Page, wait_hearing, wait_status, wait_status_seen


# Id tokens this short expire within a test; the page renews them at half this.
SHORT_TOKEN_SECONDS = 3


@pytest.fixture
def config(tmp_path, request) -> duoduel.Config:
    """Reports and bans in files of the test's own; WebTransport offered when a test asks for it (indirect "config":
    "webtransport", or "webtransport-short-tokens" whose offers' tokens last SHORT_TOKEN_SECONDS)."""
    option = getattr(request, "param", "websocket")
    return duoduel.Config(
        host="127.0.0.1", port=0, report_log=tmp_path / "reports.jsonl", bans_file=tmp_path / "bans.json",
        webtransport=option != "websocket",
        webtransport_port=0, id_token_seconds=SHORT_TOKEN_SECONDS if option == "webtransport-short-tokens" else TOKEN_SECONDS,
    )


async def start(open_page, person: str, engine: str) -> Page:
    page = await open_page(person, engine)
    await page.click("#start")
    return page


async def both_waiting_apart(server) -> None:
    """Two pages wait, and the server has not paired them: each was looked at by the other's arrival."""
    await until(lambda: _waiting_apart(server), "two clients waiting and no call")


async def _waiting_apart(server) -> bool:
    state = await health(server)
    return state["waiting"] == 2 and state["pairs"] == 0


@engines("chromium-firefox", "firefox-chromium")
async def test_block_button_ends_the_call_and_the_two_never_meet_again(server, open_page, engines):
    """Ann presses Block and confirms: Bob sees "Partner left", Ann reads that it worked; both wait without being
    paired together, also after reloading their pages; Cyd, a newcomer, is paired."""
    ann = await start(open_page, "ann", engines[0])
    await wait_status(ann, "Waiting for a partner")
    bob = await start(open_page, "bob", engines[1])
    await wait_status(ann, "Connected")
    await wait_hearing(ann, TONES["bob"])
    assert await ann.is_hidden("#block-confirm") and not await ann.is_hidden("#block")
    await ann.click("#block")
    assert not await ann.is_hidden("#block-confirm")
    await ann.click("#block-yes")
    await wait_status_seen(bob, "Partner left")
    assert (await ann.text("#note")).startswith("Blocked: you will not be paired with this person again.")
    await wait_status(bob, "Waiting for a partner")
    await wait_status(ann, "Waiting for a partner")
    await both_waiting_apart(server)
    assert await ann.is_hidden("#block")
    for page in (ann, bob):  # same browsers, same cookie: still apart
        await page.goto(f"{server.origin}/")
        await page.click("#start")
        await wait_status(page, "Waiting for a partner")
    await both_waiting_apart(server)
    cyd = await start(open_page, "cyd", "chromium")
    await wait_status(cyd, "Connected")
    await wait_status(ann, "Connected")  # the first in line: Ann waited before Bob
    await wait_hearing(cyd, TONES["ann"])


@engines("chromium-chromium")
@pytest.mark.parametrize("config", ["websocket", "webtransport"], indirect=True)
async def test_report_from_the_page_names_the_id_its_first_load_set(server, open_page, engines, config, request):
    """The page's first load sets the id cookie; the report Ann sends names that id, from the WebSocket's handshake or
    from the token the page gives its WebTransport session, and her reason."""
    transport = request.node.callspec.params["config"]
    ann = await start(open_page, "ann", engines[0])
    await wait_status(ann, "Waiting for a partner")
    bob = await start(open_page, "bob", engines[1])
    await wait_status(bob, "Connected")
    for page in (ann, bob):
        assert await page.evaluate("() => window.duoduel.link.kind") == transport
    await ann.click("#block")
    await ann.evaluate("() => { document.getElementById('report-reason').value = 'shouted insults'; }")
    await ann.click("#report-yes")
    await wait_status_seen(bob, "Partner left")
    assert (await ann.text("#note")).startswith("Reported and blocked")
    report = json.loads(config.report_log.read_text())
    assert report["reporter"]["id"] == (await ann.cookies())["duoduel_id"]
    assert report["reported"]["id"] == (await bob.cookies())["duoduel_id"]
    assert report["reason"] == "shouted insults"


@engines("chromium-chromium", "firefox-chromium")
@pytest.mark.parametrize("config", ["webtransport-short-tokens"], indirect=True)
async def test_block_holds_when_a_page_reconnects_after_its_id_tokens_lifetime(server, open_page, engines):
    """Ann blocks Bob over WebTransport; after the id token of her page's first offer has expired, her connection
    drops and her page opens a new session: it carries a renewed token, so she is still her browser, and the two
    still wait apart (with the expired token she would be a stranger known by address, and paired with Bob)."""
    ann = await start(open_page, "ann", engines[0])
    await wait_status(ann, "Waiting for a partner")
    (anns,) = server.webtransport.sessions
    bob = await start(open_page, "bob", engines[1])
    await wait_status(ann, "Connected")
    await ann.click("#block")
    await ann.click("#block-yes")
    await wait_status_seen(bob, "Partner left")
    await both_waiting_apart(server)
    await asyncio.sleep(2 * SHORT_TOKEN_SECONDS)  # the token of her first offer expires (her page renews it meanwhile)
    before = set(server.webtransport.sessions)
    anns.connection._quic.close(error_code=0, reason_phrase="gone")  # a drop, while she waits alone: no resume
    anns.connection.transmit()
    await until(lambda: _closed(anns), "Ann's session to end")
    await until(lambda: _back_apart(server, before), "a new session of Ann's, waiting apart from Bob")
    assert await ann.evaluate("() => window.duoduel.link.kind") == "webtransport"


async def _closed(session) -> bool:
    return session.close_code is not None


async def _back_apart(server, before: set) -> bool:
    return bool(set(server.webtransport.sessions) - before) and await _waiting_apart(server)


@engines("chromium", "firefox")
async def test_banned_page_says_why_it_cannot_connect(server, open_page, engines, config):
    """The operator bans this machine's address; Ann presses Start: her browser hides the 403's line from the page,
    so the page asks the server why and shows that line (never a generic connection error), and stops trying."""
    banned = run_command("python", str(ROOT / "duoduel.py"), "ban", "127.0.0.1", "--bans-file", str(config.bans_file))
    assert banned.returncode == 0, banned.stderr
    ann = await open_page("ann", engines[0])
    await ann.click("#start")
    await ann.wait_for("() => !document.getElementById('error').hidden", what="an error line")
    assert await ann.text("#error") == "You are banned from this service."
    await wait_status(ann, "Not connected")
