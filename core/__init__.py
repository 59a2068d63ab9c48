"""duoduel's core: the lobby, the relay, and the links they serve.

duoduel.py, the command, imports from here; nothing here imports duoduel, so
`python duoduel.py` (run as __main__) loads every module once. Top to bottom,
as a frame goes:

- link: Link, what the lobby asks of a client's connection.
- websocket: the WebSocket as a Link, on the fast route or websockets' public API.
- webtransport: a WebTransport session (aioquic, UDP) as a Link: control lines, audio datagrams.
- relay: an audio frame from its sender to its partner or its group room.
- lobby: who is connected, who waits, who talks: pairing, group rooms, labels.
- session: a client's stay: screened, arrives, control messages, departs.
- resume: a dropped client's place held for a while, and taken back.
- shared: the lobby that several processes share through Redis (--redis).
- config: the limits, and the Config that the command line fills in.
"""
