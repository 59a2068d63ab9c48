"""Link: what the lobby, the pairing and the relay ask of a client's connection.

A WebSocket is one (core.websocket); a WebTransport session is another. Nothing in
the lobby touches the connection underneath, so clients of every kind pair, share
group rooms and resume alike. core.session says what a new kind of link calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from core.lobby import Client, Lobby


class Link(Protocol):
    """A client's connection, as the lobby sees it.

    Nothing here waits for the other end: a frozen partner must never stall its
    sender, and pairing sends under the lobby lock so that notices keep their order.
    """

    kind: str  # "websocket" or "webtransport": what carries it, for /metrics

    @property
    def is_open(self) -> bool:
        """Open for relaying: neither closing nor closed."""

    @property
    def close_code(self) -> int | None:
        """How it closed (WebSocket codes): None while open, 1006 if it dropped without a goodbye."""

    @property
    def remote_address(self) -> Any:
        """(host, port) of the other end, for the log; None if unknown."""

    def send_text(self, message: str) -> None:
        """Queue a control message now, never waiting; nothing if the link is closing."""

    def send_frame(self, frame: bytes) -> bool:
        """Queue an audio frame now, never waiting; False if the link is closing."""

    def backlog(self) -> int:
        """Bytes queued for this client and not yet sent: the relay drops audio past a bound.

        Bind it on the instance when the link opens (`self.backlog = self.backlog` will do): the relay
        reads it as an attribute, then calls it, which CPython 3.11 specialises for an instance's own
        attribute but pays for a method found on the class with a new bound method each frame.
        """

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with a WebSocket close code and a reason; return once closed."""

    def start_relay(self, lobby: Lobby, client: Client) -> None:
        """From now on, hand each audio frame the client sends to core.relay.relay() as it arrives."""

    def stop_relay(self) -> None:
        """The client resumed on another link: relay nothing more from this one."""
