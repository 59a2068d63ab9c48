"""Take docs/page-group.png: a group room of four in headless Chromium, seen from Ann's page.

    flock /tmp/duoduel-heavy.lock python docs/group_screenshot.py [--out docs/page-group.png]

Runs duoduel (room size 8) on an ephemeral port, opens four Chromium pages with fake microphones
playing tones (tests/browser.py), gives three of them names, turns one member down on Ann's page and
mutes another, waits for the figures, and saves Ann's page.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import duoduel  # noqa: E402
from browser import launch_args, write_tone  # noqa: E402
from pages import room_path  # noqa: E402

PEOPLE = [("Ann", 440.0), ("Bob", 554.0), ("Cyd", 660.0), (None, 880.0)]


async def shoot(out: Path) -> None:
    """Start the server and the four pages, arrange Ann's page, save its screenshot."""
    from playwright.async_api import async_playwright

    config = duoduel.Config(host="127.0.0.1", port=0)
    async with duoduel.make_server(config) as server, async_playwright() as playwright:
        origin = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        folder = Path(tempfile.mkdtemp(prefix="duoduel-shot-"))
        pages = []
        for name, hz in PEOPLE:
            browser = await playwright.chromium.launch(**launch_args(write_tone(folder / f"{hz:g}.wav", hz)))
            page = await browser.new_page(viewport={"width": 1100, "height": 1000})
            await page.goto(origin + room_path("study-group"))
            if name:
                await page.evaluate("(name) => localStorage.setItem('duoduel.name', name)", name)
                await page.reload()
            await page.click("#start")
            await page.wait_for_function("() => /Connected|Waiting/.test(window.duoduel.state)")
            pages.append(page)
        ann = pages[0]
        await ann.wait_for_function("() => document.querySelectorAll('#members .member').length === 3")
        await ann.fill("#members li[data-slot='2'] .member-volume", "60")
        await ann.dispatch_event("#members li[data-slot='2'] .member-volume", "input")
        await ann.click("#members li[data-slot='3'] .member-mute")
        await ann.wait_for_function(
            "() => [...document.querySelectorAll('.member-figures')].every((el) => el.textContent.includes('lost'))")
        await asyncio.sleep(2)  # let the meters and figures settle
        await ann.evaluate("() => document.activeElement && document.activeElement.blur()")
        await ann.screenshot(path=str(out), full_page=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "page-group.png")
    asyncio.run(shoot(parser.parse_args().out))


if __name__ == "__main__":
    main()
