"""End-to-end encryption in real headless browsers (issue 22): what the people hear, what the page says, and what
anyone else sees.

- A private room made with "Create private room" carries its key in its link's fragment; two pages that open the
  link hear each other (Chromium, Firefox, WebKit), and every frame they send is sealed.
- A page whose link has the wrong key says so in one line and plays nothing; a link cut at the "#" says so
  before Start, which stays disabled.
- A raw client that knows only a room's name joins it and records: none of it decodes, with libopus, to the
  page's voice.
- A relay between two lobby pages that swaps the keys they exchange: the two safety codes differ, and neither
  page can decrypt the other.
- Nothing of a room's key reaches the server: not in any request (the handshakes and every message, unmasked),
  nor in anything the server answers or logs.

The server runs with its default room size (8): rooms are group rooms, as a private room is by default.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import re
import signal
import struct
import threading
import urllib.parse
from collections.abc import AsyncIterator

import numpy as np
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from conftest import Running, engines, join as join_raw, open_at, require
from opus import OpusDecoder, OpusError, missing_opus
from pages import ROOM_KEY, SILENT, TIMEOUT_S, TONES, Page, room_path, wait_hearing, wait_rms, wait_status

E2EE_MESSAGES = {  # static/e2ee.js's MESSAGES, as the page shows them
    "noKey": 'This room link is incomplete: its key (the part after "#") is missing or damaged. '
             "Open the full link, or create a new private room.",
    "wrongKey": "Nothing the others send can be decrypted: the room link (yours or theirs) is incomplete or wrong. "
                "Open the full link again.",
    "wrongCallKey": "Your partner's audio cannot be decrypted: someone between you changed the key exchange. "
                    "Press Next to find someone else.",
}
OTHER_KEY = "b3RoZXIgcm9vbSBrZXkhIQ"  # a well-formed key, not the room's
LINK = re.compile(r"(http://[^/]+)/r/([A-Za-z0-9_-]{22})#([A-Za-z0-9_-]{22})")

ENCRYPTION_JS = "() => window.duoduel.encryption"


async def error_line(page: Page) -> str:
    """The error line, once it shows."""
    await page.wait_for("() => !document.getElementById('error').hidden", what="the error line")
    return await page.text("#error")


async def wait_error(page: Page, text: str) -> None:
    await page.wait_for("(text) => document.getElementById('error').textContent === text", text,
                        what=f'the error line "{text}"')


@engines("firefox-chromium", "chromium-webkit")
async def test_a_room_made_with_create_private_room_keeps_its_key_in_the_link_and_both_hear_each_other(
        server, open_page, engines):
    """Ann presses Create private room: the link, its QR code and the address bar carry a key after "#". Bob
    opens that link; both press Start and hear each other, every frame sealed, as the figures line says."""
    ann = await open_page("ann", engines[0])
    await ann.click("#create-room")
    link = await ann.wait_for("() => document.getElementById('room-link').textContent", what="the room link")
    origin, _name, key = LINK.fullmatch(link).groups()
    assert origin == server.origin and key != ROOM_KEY
    assert await ann.evaluate("() => location.href") == link
    assert await ann.evaluate("() => document.querySelector('#qr svg').getAttribute('aria-label')") == f"QR code of {link}"
    bob = await open_page("bob", engines[1], link.removeprefix(origin))
    await ann.click("#start")
    await wait_status(ann, "Waiting for others")
    await bob.click("#start")
    await wait_hearing(ann, TONES["bob"])
    await wait_hearing(bob, TONES["ann"])
    for page in (ann, bob):
        counters = await page.evaluate(ENCRYPTION_JS)
        assert counters["keyed"] and counters["sealed"] > 0 and counters["opened"] > 0, counters
        assert counters["failed"] == 0, counters
        await page.wait_for("() => document.getElementById('stats').textContent.includes('end-to-end encrypted')",
                            what="the figures line to say the call is encrypted")


@engines("chromium-chromium-chromium")
async def test_a_wrong_room_key_says_so_and_plays_nothing_and_a_missing_one_keeps_start_disabled(
        server, open_page, engines):
    """Bob's link names Ann's room with another key: within a few seconds both pages say the link is incomplete
    or wrong, count what they could not decrypt, and play nothing. Cyd's link stops at the "#": her page says
    the link is incomplete before she can press Start, and never connects."""
    ann = await open_page("ann", engines[0], room_path("wrong-key"))
    await ann.click("#start")
    await wait_status(ann, "Waiting for others")
    bob = await open_page("bob", engines[1], room_path("wrong-key", OTHER_KEY))
    await bob.click("#start")
    await wait_status(bob, "Connected")
    for page in (ann, bob):
        await wait_error(page, E2EE_MESSAGES["wrongKey"])
        counters = await page.evaluate(ENCRYPTION_JS)
        assert counters["opened"] == 0 and counters["failed"] >= 50, counters
        await page.wait_for("() => / \\d+ not decrypted/.test(document.getElementById('stats').textContent)",
                            what="the figures line to count the frames not decrypted")
        played = await page.evaluate(
            "() => window.duoduel.group.members.map((m) => window.duoduel.session.memberStats(m.slot)?.codec ?? null)")
        assert played == [None], "the other member's decoder never had a frame"
        await wait_rms(page, below=SILENT)

    cyd = await open_page("cyd", engines[2], "/r/wrong-key")
    assert await error_line(cyd) == E2EE_MESSAGES["noKey"]
    assert await cyd.evaluate("() => document.getElementById('start').disabled")
    assert await cyd.evaluate("() => window.duoduel.link") is None
    await cyd.goto(server.origin + "/r/wrong-key#" + ROOM_KEY[:21])  # one character short
    assert await error_line(cyd) == E2EE_MESSAGES["noKey"]
    assert await cyd.evaluate("() => document.getElementById('start').disabled")


async def record_frames(websocket, count: int) -> list[bytes]:
    """The next `count` binary messages a raw client gets (slot byte included); control messages are skipped."""
    frames: list[bytes] = []
    async with asyncio.timeout(TIMEOUT_S):
        while len(frames) < count:
            message = await websocket.recv()
            if isinstance(message, bytes):
                frames.append(message)
    return frames


def decode_recorded(frames: list[bytes], opus_at: int) -> np.ndarray:
    """What a recording plays: each message from byte opus_at on, decoded with libopus in the order they came;
    a packet libopus cannot parse is concealed, as a page's decoder would."""
    audio = []
    with OpusDecoder(48000) as decoder:
        for message in frames:
            try:
                audio.append(decoder.decode(message[opus_at:]))
            except OpusError:
                audio.append(decoder.decode(None))
    return np.concatenate(audio)


def tone_share(samples: np.ndarray, hz: float, rate: int = 48000) -> float:
    """The share of the signal's energy in the band hz ± 5 Hz: near 1 for a page's tone decoded from its frames in
    clear, 0.002 in the median for random bytes decoded as Opus (0.18 the most in 400 tries)."""
    x = samples - samples.mean()
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    bins = np.fft.rfftfreq(len(x), 1 / rate)
    return float(power[(bins > hz - 5) & (bins < hz + 5)].sum() / (power.sum() + 1e-30))


@engines("chromium")
async def test_a_raw_client_that_knows_only_the_room_name_records_nothing_that_decodes_to_the_voice(
        server, open_page, engines):
    """A client joins Ann's room by its name alone and records her frames: none has duoduel's header in clear,
    and whatever byte an Opus packet is taken to start at, libopus decodes them to noise, never to her tone
    (in clear they decoded to it: issue 22)."""
    if reason := missing_opus():
        require(reason)
    ann = await open_page("ann", engines[0], room_path("overheard"))
    await ann.click("#start")
    await wait_status(ann, "Waiting for others")
    eavesdropper, first = await join_raw(server, "?room=overheard")
    try:
        assert first["type"] == "room" and first["members"], first
        frames = await record_frames(eavesdropper, 100)
    finally:
        await eavesdropper.close()
    assert (await ann.evaluate(ENCRYPTION_JS))["sealed"] >= 100
    clear = [m for m in frames if len(m) >= 17 and struct.unpack_from("<BBHI", m, 1)[::3] == (1, 48000)]
    assert clear == [], "a frame whose duoduel header is readable"
    # The Opus packet sat at 1 + 16 in clear; an eavesdropper may guess any start past the SFrame header.
    for opus_at in range(1, 40):
        played = decode_recorded(frames, opus_at)
        assert tone_share(played, TONES["ann"]) < 0.5, f"Ann's tone in the recording decoded from byte {opus_at}"


async def test_a_room_key_never_reaches_the_server(start_process, browsers):
    """Ann creates a room and Bob joins it by its link, both through a proxy that records every byte either way;
    the server runs with debug logging. The key is in none of it: not in a request line or header (a Referer),
    not in any WebSocket message (unmasked), not in a reply, not in the log."""
    process = start_process("--log-level", "debug")
    log_lines: list[str] = []
    reading = threading.Thread(target=lambda: log_lines.extend(process.popen.stdout), daemon=True)
    reading.start()  # a full pipe would stall the server
    async with recording_proxy(process.running) as proxy:
        origin = f"http://127.0.0.1:{proxy.port}"
        ann = await open_at(browsers, "ann", "chromium", origin + "/")
        await ann.click("#create-room")
        link = await ann.wait_for("() => document.getElementById('room-link').textContent", what="the room link")
        key = LINK.fullmatch(link)[3]
        bob = await open_at(browsers, "bob", "chromium", link)
        await ann.click("#start")
        await bob.click("#start")
        await wait_hearing(bob, TONES["ann"])
        await wait_hearing(ann, TONES["bob"])
        await bob.goto(origin + "/")  # a navigation away: a Referer, if any, would name the room's page
    process.popen.send_signal(signal.SIGTERM)
    process.popen.wait(10)
    reading.join(10)
    log = "".join(log_lines)
    assert f"in room {LINK.fullmatch(link)[2]}" in log, "the log names the room, as it always did"
    secrets = key_spellings(key)
    for direction, streams in (("to the server", proxy.upstream), ("from the server", proxy.downstream)):
        for number, stream in enumerate(streams):
            for part in readable_parts(bytes(stream)):
                assert not any(secret in part for secret in secrets), f"the key {direction}, connection {number}"
    assert any(b"GET /r/" in bytes(stream) for stream in proxy.upstream), "the room's page did go through the proxy"
    assert not any(secret.decode("latin-1") in log for secret in secrets[:2]), "the key in the server's log"


def key_spellings(key: str) -> list[bytes]:
    """The ways a room's key could appear: as the link spells it, URL-encoded with its "#", and as its 16 bytes."""
    raw = base64.urlsafe_b64decode(key + "==")
    return [key.encode(), urllib.parse.quote("#" + key).encode(), raw]


def readable_parts(stream: bytes) -> list[bytes]:
    """A connection's bytes one way, as the other end reads them: HTTP heads and bodies as they are, and after
    a WebSocket upgrade each frame's payload, unmasked (a client masks every frame it sends)."""
    head, upgrade, rest = stream.partition(b"\r\n\r\n")
    if b"websocket" not in head.lower() or not upgrade:
        return [stream]
    parts = [head]
    at = 0
    while at + 2 <= len(rest):
        masked, length = rest[at + 1] & 0x80, rest[at + 1] & 0x7F
        at += 2
        if length == 126:
            length = struct.unpack_from("!H", rest, at)[0]
            at += 2
        elif length == 127:
            length = struct.unpack_from("!Q", rest, at)[0]
            at += 8
        mask = rest[at:at + 4] if masked else b"\0\0\0\0"
        at += 4 if masked else 0
        payload = rest[at:at + length]
        parts.append(bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        at += length
    return parts


class RecordingProxy:
    """A TCP proxy in front of a server that keeps every byte either way, per connection."""

    def __init__(self, target: Running):
        self.target = target
        self.upstream: list[bytearray] = []
        self.downstream: list[bytearray] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up, down = bytearray(), bytearray()
        self.upstream.append(up)
        self.downstream.append(down)
        target_reader, target_writer = await asyncio.open_connection(self.target.host, self.target.port)

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, record: bytearray) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    record += data
                    sink.write(data)
                    await sink.drain()
            with contextlib.suppress(ConnectionError, OSError):
                sink.close()

        await asyncio.gather(pump(reader, target_writer, up), pump(target_reader, writer, down))


@contextlib.asynccontextmanager
async def recording_proxy(target: Running) -> AsyncIterator[RecordingProxy]:
    proxy = RecordingProxy(target)
    listener = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    proxy.port = listener.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        listener.close()


# P-256's generator, uncompressed: a valid public key (of the private key 1) for the relay to offer as its own.
P256_GENERATOR = bytes.fromhex(
    "04"
    "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
    "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class KeySwappingRelay:
    """Between the pages and the server: serves the server's page unchanged, and passes every WebSocket message
    on, both ways, except key messages: each page's commitment and public key are replaced by the relay's own
    (committed to first, as the pages require), so that each page agrees a key with the relay, not its partner."""

    def __init__(self, target: Running):
        self.target = target
        self.swapped = 0

    def swap(self, message: str | bytes) -> str | bytes:
        if isinstance(message, bytes):
            return message
        parsed = json.loads(message)
        if parsed.get("type") != "key":
            return message
        self.swapped += 1
        if "commit" in parsed:
            commit = hashlib.sha256(b"duoduel key commit " + P256_GENERATOR).digest()
            return json.dumps({"type": "key", "commit": b64url(commit)})
        return json.dumps({"type": "key", "public": b64url(P256_GENERATOR)})

    async def page(self, connection: ServerConnection, request: Request) -> Response | None:
        """Any HTTP request but the WebSocket's: the server's answer, fetched with the page's own Host."""
        if urllib.parse.urlsplit(request.path).path == "/ws":
            return None
        reader, writer = await asyncio.open_connection(self.target.host, self.target.port)
        writer.write(f"GET {request.path} HTTP/1.1\r\nHost: {request.headers['Host']}\r\n"
                     "Connection: close\r\n\r\n".encode("latin-1"))
        raw = await reader.read()
        writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = Headers(line.split(": ", 1) for line in lines)
        _, status, reason = status_line.split(" ", 2)
        return Response(int(status), reason, headers, body)

    async def relay(self, page: ServerConnection) -> None:
        async with connect(self.target.ws_url() + page.request.path.removeprefix("/ws")) as server:
            async def forward(source, sink, swap: bool = True) -> None:
                async for message in source:
                    await sink.send(self.swap(message) if swap else message)
                await sink.close()

            # Swapped on their way to the pages: each key message once.
            await asyncio.gather(forward(page, server, swap=False), forward(server, page), return_exceptions=True)


@engines("chromium-chromium")
async def test_a_relay_that_swaps_the_lobby_keys_gives_the_pages_different_safety_codes(server, browsers, engines):
    """Two lobby pages through a relay that puts its own key in place of each page's: both pages agree a key
    (with the relay) and show a safety code, but not the same one, and neither can decrypt what the other
    sends: each says so in one line and plays nothing."""
    relay = KeySwappingRelay(server)
    async with serve(relay.relay, "127.0.0.1", 0, process_request=relay.page) as listener:
        origin = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
        pages = []
        for person, engine in zip(("ann", "bob"), engines):
            page = await open_at(browsers, person, engine, origin + "/")
            await page.click("#start")
            pages.append(page)
        ann, bob = pages
        codes = []
        for page in pages:
            await wait_status(page, "Connected")
            code = await page.wait_for("() => document.getElementById('safety-code').textContent",
                                       what="the safety code")
            assert re.fullmatch(r"\d{3} \d{3}", code) and not await page.is_hidden("#safety")
            codes.append(code)
        assert codes[0] != codes[1], "the codes tell the two people that someone sits between them"
        assert relay.swapped == 4, "each page's commit and public key"
        for page in pages:
            await wait_error(page, E2EE_MESSAGES["wrongCallKey"])
            assert (await page.evaluate(ENCRYPTION_JS))["opened"] == 0
            await wait_rms(page, below=SILENT)
