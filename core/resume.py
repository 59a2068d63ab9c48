"""Resuming after a dropped link (issue 13).

A page that asks (?resumable=1) gets a resume token on its own link. If that
link drops in a call (no closing handshake: 1006), the client's place (partner,
room, slot, label) is held for resume_window seconds and the others hear
"reconnecting"; a link that opens with ?resume=TOKEN meanwhile takes the place
back. A page that says goodbye (any close frame: 1000, or 1001 when its tab
closes) leaves at once. Tokens are single use: each resume hands out a new one.
The Client object stays; only its link changes, detached from the old one
first, so audio that the old link delivers late is never relayed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets

from core.lobby import CONNECTED, DISCONNECTED, WAITING, Client, Lobby, leave, pair_or_wait, room_notice, where
from core.link import Link

log = logging.getLogger("duoduel")

# A resume token's random bytes: 192 bits, 32 characters of base64url.
RESUME_TOKEN_BYTES = 24
RECONNECTING = json.dumps({"type": "reconnecting"})
RESUMED = json.dumps({"type": "resumed"})


def grant_token(lobby: Lobby, client: Client, resumed: bool = False) -> None:
    """Give the client a fresh resume token (forgetting its old one) and tell it, on its own link."""
    if client.token is not None:
        lobby.tokens.pop(client.token, None)
    client.token = secrets.token_urlsafe(RESUME_TOKEN_BYTES)
    lobby.tokens[client.token] = client
    session = {"type": "session", "token": client.token, "window": lobby.config.resume_window}
    if resumed:
        session["resumed"] = True
    client.link.send_text(json.dumps(session))


def forget_token(lobby: Lobby, client: Client) -> None:
    """The client will not be back: its token opens nothing from now on."""
    if client.token is not None:
        lobby.tokens.pop(client.token, None)
        client.token = None


def tell_others(client: Client, kind: str) -> None:
    """Tell the client's partner, or the rest of its group room, that it is reconnecting or resumed."""
    if client.group is not None:
        notice = json.dumps({"type": kind, "slot": client.slot})
        for member in client.group.members:
            if member is not client:
                member.link.send_text(notice)
    elif client.partner is not None:
        client.partner.link.send_text(RECONNECTING if kind == "reconnecting" else RESUMED)


def holdable(lobby: Lobby, client: Client, link: Link) -> bool:
    """Whether a closed link was a drop worth holding a place for.

    Only a drop: the page sent no close frame (1006), and the server did not
    close it on purpose (flooding, stalled). Only in company: a call, or a group
    room with someone else in it; whoever waited alone just waits again.
    """
    if lobby.config.resume_window <= 0 or client.token is None or client.closing is not None:
        return False
    if link.close_code != 1006:
        return False
    if client.group is not None:
        return len(client.group.members) > 1
    return client.partner is not None


def hold(lobby: Lobby, client: Client) -> None:
    """Keep a dropped client's place for the resume window; tell the others it is reconnecting."""
    lobby.held.add(client)
    lobby.metrics.holds += 1
    client.expiry = asyncio.create_task(expire(lobby, client))
    tell_others(client, "reconnecting")
    log.info("%s dropped%s: place held for %g s", client.name, where(client), lobby.config.resume_window)


async def expire(lobby: Lobby, client: Client) -> None:
    """At the end of the window, a client that did not come back leaves as if it had just gone."""
    await asyncio.sleep(lobby.config.resume_window)
    async with lobby.lock:
        if client.expiry is not asyncio.current_task():
            return  # it resumed while this task waited for the lock
        client.expiry = None
        lobby.held.discard(client)
        forget_token(lobby, client)
    log.info("%s did not come back within %g s", client.name, lobby.config.resume_window)
    await leave(lobby, client)


async def resume(lobby: Lobby, link: Link, token: str, room: str | None) -> Client | None:
    """Give a held (or still connected) client's place to a new link, and close the link it had.

    None if the token opens nothing here: unknown, used already, expired, or
    for another room. The old link is detached before the new one is attached.
    """
    async with lobby.lock:
        client = lobby.tokens.get(token)
        if client is None or client.room != room:
            return None
        old = client.link
        old.stop_relay()
        client.link = link
        client.closing, client.stalled_since = None, None
        client.messages, client.window_start = 0, asyncio.get_running_loop().time()
        if client.expiry is not None:
            client.expiry.cancel()
            client.expiry = None
        lobby.held.discard(client)
        lobby.metrics.resumes += 1
        lobby.metrics.connections += 1
        tell_place(lobby, client)
        grant_token(lobby, client, resumed=True)
        tell_others(client, "resumed")
    log.info("%s resumed%s", client.name, where(client))
    # Close the link it had, if the server had not noticed its drop, without waiting for its goodbye.
    retiring = asyncio.create_task(old.close(1000, "resumed on another connection"))
    lobby.retiring.add(retiring)
    retiring.add_done_callback(lobby.retiring.discard)
    return client


def tell_place(lobby: Lobby, client: Client) -> None:
    """Tell a resumed client where it is now: its group room, its call, its wait, or that its partner left meanwhile."""
    if client.group is not None:
        client.link.send_text(room_notice(lobby, client))
        client.link.send_text(CONNECTED if len(client.group.members) > 1 else WAITING)
    elif client.partner is not None:
        client.link.send_text(CONNECTED)
    elif lobby.waiting.get(client.room) is client:  # it resumed a wait (its old link was still open)
        client.link.send_text(WAITING)
    else:
        client.link.send_text(DISCONNECTED)
        if client.room is not None:  # in a room, as when a partner leaves: wait there again
            pair_or_wait(lobby, client)


async def release_held(lobby: Lobby) -> None:
    """On shutdown: end every hold now, so no window outlives the server."""
    for client in list(lobby.held):
        if client.expiry is not None:
            client.expiry.cancel()
    lobby.held.clear()
    lobby.tokens.clear()
