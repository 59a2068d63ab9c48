"""The relay's two routes: duoduel's own frame cutter when websockets' internals pass the start-up self-check, and
websockets' public API alone, after one warning, when they do not. CI also runs these against the newest websockets."""

from __future__ import annotations

import logging

import pytest

import core.websocket
import duoduel
from conftest import join_pair, running_server

pytestmark = pytest.mark.relay


async def test_self_check_passes_on_this_websockets():
    """The internals the fast route uses exist and behave here; a release that changes them fails this test."""
    assert await core.websocket.check_fast_route() is None


async def test_server_relays_on_the_fast_route_when_the_self_check_passes(caplog):
    """By default the server cuts frames itself, says so once, and warns of nothing."""
    with caplog.at_level(logging.INFO, "duoduel"):
        async with running_server(duoduel.Config(host="127.0.0.1", port=0)) as running:
            first, second = await join_pair(running)
            await first.send(b"audio")
            assert await second.recv() == b"audio"
            await first.close()
            await second.close()
    assert "relay route: frames cut from the byte stream (self-check passed)" in caplog.text
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING and record.name == "duoduel"]


def mask_that_does_nothing(data: bytes, mask: bytes) -> bytes:
    """apply_mask as a release that changed its meaning might behave."""
    return bytes(data)


@pytest.mark.parametrize("apply_mask", [None, mask_that_does_nothing], ids=["missing", "misbehaving"])
async def test_internals_that_fail_the_self_check_mean_one_warning_and_the_public_route(monkeypatch, caplog, apply_mask):
    """A websockets without what the fast route needs: one warning at start-up, and audio still arrives intact."""
    monkeypatch.setattr(core.websocket, "apply_mask", apply_mask)
    with caplog.at_level(logging.INFO, "duoduel"):
        async with running_server(duoduel.Config(host="127.0.0.1", port=0)) as running:
            first, second = await join_pair(running)
            for frame in (b"short", bytes(range(256)) * 8):
                await first.send(frame)
                assert await second.recv() == frame
            await first.close()
            await second.close()
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING and record.name == "duoduel"]
    assert len(warnings) == 1
    assert "failed duoduel's self-check" in warnings[0] and "public API" in warnings[0]


async def test_public_route_can_be_chosen_without_a_self_check(caplog):
    """relay_route="public" skips the fast route altogether, with no warning."""
    with caplog.at_level(logging.INFO, "duoduel"):
        async with running_server(duoduel.Config(host="127.0.0.1", port=0, relay_route="public")):
            pass
    assert "relay route: websockets' public API (as configured)" in caplog.text
    assert "WARNING" not in [record.levelname for record in caplog.records if record.name == "duoduel"]
