"""Who is at the other end, without accounts: a browser's id, and the address that counts for limits and bans.

A browser's id is a random 128-bit value in the duoduel_id cookie, set by the
page's first load (or by the first WebSocket handshake that comes without it)
and kept for a year. It means "this browser" and nothing more: it lets a block
outlive a reload, and an operator ban one browser. Clearing cookies drops it,
which a ban by address covers.

WebTransport requests carry no cookies (the browser omits credentials), so a
page hands its id to a WebTransport endpoint as a token: issue_token() signs
the id (HMAC-SHA256 with a secret of this process, or of the shared lobby with
--redis) for the page's offer; identity_from_token() checks a token and gives
the id back, or None (forged, altered or expired).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from dataclasses import dataclass

COOKIE_NAME = "duoduel_id"
BROWSER_ID = re.compile(r"[0-9a-f]{32}")  # 128 bits, hex
COOKIE_MAX_AGE = 365 * 24 * 3600
TOKEN_SECONDS = 3600  # a WebTransport token: the page renews it at half its life; a stolen one is good for an hour at most
UNIX_PEER = ""  # the peer's address of a connection on a unix socket, as the gate reads it
IPV6_PREFIX = 64  # one IPv6 subscriber gets a whole /64: count and ban it as one address


@dataclass(frozen=True)
class Visitor:
    """Who a handshake comes from: the browser's id, whether it is new, the address that counts, and if it is limited."""

    browser: str
    fresh: bool  # the id was made now: the handshake's answer sets the cookie
    address: str
    limited: bool  # False for loopback without a trusted proxy: local tests and benches are not limited


def identify(browser: str | None, peer: str, forwarded_for: str | None, trusted: frozenset[str]) -> Visitor:
    """The visitor a handshake comes from: its browser's id (a new one if it has none) and its address."""
    address = client_address(peer, forwarded_for, trusted)
    fresh = browser is None
    # Not limited: this machine without a proxy to count for (tests, benches), and a trusted proxy itself (it forwarded
    # no other address: a local tool or health check behind it).
    limited = address not in trusted and (bool(trusted) or not is_loopback(address))
    return Visitor(new_browser_id() if fresh else browser, fresh, address, limited)


def new_browser_id() -> str:
    """A fresh random browser id: 128 bits."""
    return secrets.token_hex(16)


def browser_in(cookie_header: str | None) -> str | None:
    """The browser id in a Cookie header, if there is a well-formed one."""
    for pair in (cookie_header or "").split(";"):
        name, _, value = pair.strip().partition("=")
        if name == COOKIE_NAME and BROWSER_ID.fullmatch(value):
            return value
    return None


def set_cookie(browser: str, secure: bool) -> str:
    """The Set-Cookie value that keeps a browser's id for a year, out of scripts' reach."""
    return f"{COOKIE_NAME}={browser}; Max-Age={COOKIE_MAX_AGE}; Path=/; HttpOnly; SameSite=Lax" + ("; Secure" if secure else "")


def issue_token(secret: bytes, browser: str, seconds: float = TOKEN_SECONDS, now: float | None = None) -> str:
    """A signed token that carries a browser's id to an endpoint that gets no cookie (WebTransport), for `seconds`."""
    expires = int((time.time() if now is None else now) + seconds)
    body = f"{browser}.{expires}"
    return f"{body}.{signature(secret, body)}"


def identity_from_token(secret: bytes, token: str, now: float | None = None) -> str | None:
    """The browser id a token carries, or None if it is malformed, forged or expired."""
    browser, _, rest = token.partition(".")
    expires, _, mac = rest.partition(".")
    if not BROWSER_ID.fullmatch(browser) or not expires.isdigit() or len(expires) > 12:
        return None
    if not hmac.compare_digest(mac, signature(secret, f"{browser}.{expires}")):
        return None
    return browser if int(expires) > (time.time() if now is None else now) else None


def signature(secret: bytes, body: str) -> str:
    """HMAC-SHA256 of a token's body, base64url without padding."""
    digest = hmac.new(secret, body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def address_key(host: str) -> str:
    """The address that counts: an IPv4 address (or ::1) as is, an IPv6 one as its /64; anything else as given."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and not address.is_loopback:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
    return str(address)


def client_address(peer: str, forwarded_for: str | None, trusted: frozenset[str]) -> str:
    """The address a request counts as: the peer's, or behind a trusted proxy the last one it forwards.

    X-Forwarded-For is read from the right: every address a trusted proxy added
    is skipped, and the first one no trusted proxy vouches for counts (a client
    may write anything at the left). A peer on a unix socket (--unix) is a proxy too: only this machine reaches
    it. From any other peer the header is ignored. The trusted addresses are
    written as plain() writes them (main() does).
    """
    proxied = peer == UNIX_PEER or (bool(trusted) and plain(peer) in trusted)
    if peer == UNIX_PEER:
        peer = "127.0.0.1"  # a unix socket's peer is on this machine
    if not forwarded_for or not proxied:
        return address_key(peer)
    for hop in reversed([plain(hop) for hop in forwarded_for.split(",")]):
        if hop and hop not in trusted:
            return address_key(hop)
    return address_key(peer)


def plain(host: str) -> str:
    """An address written one way: IPv4-mapped IPv6 as IPv4, IPv6 compressed; anything else as given."""
    try:
        address = ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return host.strip()
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def is_loopback(address: str) -> bool:
    """Whether an address (as address_key gives it) is this machine's."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        pass
    try:
        return ipaddress.ip_network(address).is_loopback  # an IPv6 /64
    except ValueError:
        return False
