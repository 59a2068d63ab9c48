// The page's link to the server: one shape, whatever carries it. The connection state machine
// (connection.js) and app.js speak only to this; a WebTransport link has the same shape.
//
//   const link = openWebSocketLink(url, {onOpen, onText, onAudio, onClose});
//   link.kind                    'websocket' (or 'webtransport'), for the figures line
//   link.sendText(text)          a control message; nothing once the link is closing
//   link.sendAudio(arrayBuffer)  an audio frame; false if dropped (closing, or too much queued already)
//   link.close(code, reason)
//
// handlers: onOpen(), onText(text), onAudio(arrayBuffer), onClose({code, reason}); onClose comes once,
// also for a link that never opened. Opening throws only for a URL the browser will not try at all.
//
// The page opens every link through transport.js's openLink(), once per connect: that is where a kind is
// chosen (WebTransport where the server offers it and the browser has it, else this WebSocket).

/** Human names of the link kinds, as the figures line says them ("over WebSocket"). */
export const LINK_NAMES = Object.freeze({ websocket: 'WebSocket', webtransport: 'WebTransport' });

// Audio frames queued in the socket beyond this are dropped: late audio is worse than lost audio.
const MAX_BUFFERED_BYTES = 32 * 1024;

export function openWebSocketLink(url, handlers) {
  const socket = new WebSocket(url);
  socket.binaryType = 'arraybuffer';
  socket.addEventListener('open', () => handlers.onOpen());
  socket.addEventListener('message', (event) => {
    if (typeof event.data === 'string') handlers.onText(event.data);
    else handlers.onAudio(event.data);
  });
  socket.addEventListener('close', (event) => handlers.onClose({ code: event.code, reason: event.reason }));
  return {
    kind: 'websocket',
    sendText(text) {
      if (socket.readyState === WebSocket.OPEN) socket.send(text);
    },
    sendAudio(frame) {
      if (socket.readyState !== WebSocket.OPEN || socket.bufferedAmount >= MAX_BUFFERED_BYTES) return false;
      socket.send(frame);
      return true;
    },
    close(code, reason) {
      socket.close(code, reason);
    },
  };
}
