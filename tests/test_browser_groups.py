"""Group rooms in real headless browsers: three people in one private room, each with a tone of its own,
Chromium and Firefox together. Each page must play both others' tones at once (two peaks in the spectrum
of what it plays), list the others by name, follow a leave at once, and honour this page's local mute
of one member and push-to-talk (Space while muted) at the level of what is sent and what is played.

The server runs with its default room size (8), so these rooms speak the group protocol (`room`,
`joined`, `left`, slot-marked frames); tests/test_browser.py keeps the two-person calls.
"""

from __future__ import annotations

from conftest import engines
from pages import SILENT, Page, room_path, status, wait_members, wait_rms, wait_status, wait_tones


async def join(open_page, person: str, engine: str, room: str, name: str | None = None) -> Page:
    """Open the room's page as this person (with a stored name, if given) and press Start."""
    page = await open_page(person, engine, "/" if name is not None else room_path(room))
    if name is not None:
        # Stored first (at the lobby), then the room's page loads and finds it: a goto to the page's own
        # URL would only be a fragment navigation, no load.
        await page.evaluate("(name) => { localStorage.setItem('duoduel.name', name); }", name)
        await page.goto(await page.evaluate("() => location.origin") + room_path(room))
    await page.click("#start")
    return page


async def join_three(open_page, engines, room: str) -> tuple[Page, Page, Page]:
    """Ann, Bob and Cyd join one room in turn; all three show Connected."""
    ann = await join(open_page, "ann", engines[0], room, name="Ann <b>x</b>")
    await wait_status(ann, "Waiting for others")
    bob = await join(open_page, "bob", engines[1], room)
    cyd = await join(open_page, "cyd", engines[2], room)
    for page in (ann, bob, cyd):
        await wait_status(page, "Connected")
    return ann, bob, cyd


async def press_space(page: Page, kind: str, on: str = "document.body") -> None:
    """A Space keydown or keyup on an element, as the keyboard would deliver it."""
    await page.evaluate(
        f"""(kind) => {{ ({on}).dispatchEvent(new KeyboardEvent(kind, {{key: ' ', code: 'Space', bubbles: true}})); }}""",
        kind)


@engines("chromium-chromium-firefox")
async def test_three_members_each_hear_both_others_and_lists_follow_a_leave(open_page, engines):
    """Three in a room: each plays both others' tones and lists them by name; Cyd leaves: the others' lists
    drop her at once and they still hear each other."""
    ann, bob, cyd = await join_three(open_page, engines, "group-three")
    await wait_members(ann, ["Guest 2", "Guest 3"])
    await wait_members(bob, ["Ann <b>x</b>", "Guest 3"])  # the typed name, as text
    await wait_members(cyd, ["Ann <b>x</b>", "Guest 2"])
    assert await bob.evaluate("() => document.querySelector('#members b')") is None, "a label must never be HTML"
    assert await ann.is_hidden("#partner-meter") and await ann.is_hidden("#next")
    await wait_tones(ann, "bob", "cyd")
    await wait_tones(bob, "ann", "cyd")
    await wait_tones(cyd, "ann", "bob")
    figures = await ann.wait_for(
        "() => [...document.querySelectorAll('#members .member-figures')].every((el) => el.textContent.includes('lost'))"
        " && document.getElementById('stats').textContent", what="per-member figures and the RTT line")
    assert "RTT" in figures and "2 others" in figures

    await cyd.close()
    await wait_members(ann, ["Guest 2"])
    await wait_members(bob, ["Ann <b>x</b>"])
    assert await ann.evaluate("() => window.duoduel.session.memberCount") == 1, "the leaver's decoder is freed"
    await wait_tones(ann, "bob")
    await wait_tones(bob, "ann")
    assert await status(ann) == await status(bob) == "Connected"


@engines("chromium-chromium-chromium")
async def test_local_mute_and_push_to_talk_change_what_is_played_and_sent(open_page, engines):
    """Ann mutes Cyd on her page only: Ann plays Bob alone, Bob still plays Cyd. Bob mutes: Ann plays
    silence; Bob holds Space: Ann plays Bob again, and nothing while Bob releases it or types in his name."""
    ann, bob, cyd = await join_three(open_page, engines, "group-ptt")
    await wait_tones(ann, "bob", "cyd")

    await ann.click("#members li[data-slot='2'] .member-mute")
    await wait_tones(ann, "bob")
    await wait_tones(bob, "ann", "cyd")  # muting on Ann's page changes nothing for Bob

    await bob.click("#mute")
    await wait_rms(ann, below=SILENT)
    await wait_tones(cyd, "ann")  # Bob sends nothing while muted

    await press_space(bob, "keydown")
    assert await bob.evaluate("() => window.duoduel.talking")
    await wait_tones(ann, "bob")
    await wait_tones(cyd, "ann", "bob")
    await press_space(bob, "keyup")
    await wait_rms(ann, below=SILENT)
    assert await bob.attribute("#mute", "aria-pressed") == "true", "still muted after the release"

    await press_space(bob, "keydown", on="document.getElementById('name')")
    assert not await bob.evaluate("() => window.duoduel.talking"), "Space in the name field is typing"
    await wait_tones(cyd, "ann")

    await ann.click("#members li[data-slot='2'] .member-mute")  # Ann unmutes Cyd on her page
    await wait_tones(ann, "cyd")

