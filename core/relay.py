"""The relay: an audio frame from one client to whoever listens to it.

Every link hands each binary frame to relay(), behind flooding(). No await, no
task switch, no logging, no lock; nothing allocated but the bytes written (and,
in a group room, the marked frame, once for all its receivers).
"""

from __future__ import annotations

import asyncio

from core.config import MAX_ROOM_SIZE
from core.lobby import Client, Lobby, close_soon


def flooding(lobby: Lobby, client: Client) -> bool:
    """Count a message; if the client sends far faster than audio needs, start closing it and say so."""
    client.messages += 1
    if client.messages <= lobby.config.max_messages_per_second:
        return False
    # Only every max_messages_per_second messages: look at the clock.
    now = asyncio.get_running_loop().time()
    if now - client.window_start >= 1.0:
        client.messages, client.window_start = 0, now
        return False
    close_soon(lobby, client, 1008, "too many messages", "rate")
    return True


def relay(lobby: Lobby, client: Client, frame: bytes) -> None:
    """Forward an audio frame to the partner, or to every other member of a group room."""
    if client.group is not None:
        return fan_out(lobby, client, frame)
    partner = client.partner
    if partner is not None:
        deliver(lobby, partner, frame)


def deliver(lobby: Lobby, receiver: Client, frame: bytes) -> None:
    """Send an audio frame to one receiver, or drop it if the receiver lags behind."""
    link = receiver.link
    # Read, then called: CPython 3.11 specialises this for a callable bound on the instance (Link.backlog
    # says so), where link.backlog() costs about 150 more instructions a frame.
    backlog = link.backlog
    if backlog() > lobby.config.audio_backlog_frames * len(frame):
        drop(lobby, receiver)
    elif link.send_frame(frame):
        receiver.stalled_since = None
        metrics = lobby.metrics
        metrics.frames_relayed += 1
        metrics.bytes_relayed += len(frame)


def fan_out(lobby: Lobby, sender: Client, frame: bytes) -> None:
    """Forward an audio frame, behind its sender's slot, to every other member of its group room.

    The marked frame is built once; deliver() gives each receiver its own
    backlog check, so one that lags loses its own audio and nobody else's.
    """
    members = sender.group.members
    if len(members) < 2:
        return
    marked = SLOT_MARKS[sender.slot] + frame
    for member in members:
        if member is not sender:
            deliver(lobby, member, marked)


SLOT_MARKS = [bytes((slot,)) for slot in range(MAX_ROOM_SIZE)]


def drop(lobby: Lobby, receiver: Client) -> None:
    """Count a frame dropped for a slow receiver; close one stalled for too long."""
    lobby.metrics.frames_dropped += 1
    now = asyncio.get_running_loop().time()
    if receiver.stalled_since is None:
        receiver.stalled_since = now
    elif now - receiver.stalled_since > lobby.config.stall_timeout:
        close_soon(lobby, receiver, 1011, "receiver stalled", "stalled")
