/**
 * The WebSocket plumbing both live objects share (MetricActor, TenantHub):
 * hibernatable accept with the first messages, the typed answer to anything
 * but a heartbeat, and a close that tolerates already-closed sockets.
 */
import { isClientMessage, type ServerMessage } from "../core/live";

/** Sends without letting one broken socket affect the others. */
export function send(ws: WebSocket, message: ServerMessage | string): void {
  try {
    ws.send(typeof message === "string" ? message : JSON.stringify(message));
  } catch {
    // The socket is closing; its close handler cleans up.
  }
}

/**
 * Accepts the upgrade the Worker forwarded (it has checked the key) as a
 * hibernatable socket with `tag`, sends `first`, and answers with the
 * subprotocol the client offered.
 */
export function acceptSocket(
  ctx: DurableObjectState,
  request: Request,
  tag: string,
  first: () => ServerMessage[],
  attachment?: unknown,
): Response {
  if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
    return new Response("expected a WebSocket", { status: 426 });
  }
  const { 0: client, 1: server } = new WebSocketPair();
  ctx.acceptWebSocket(server, [tag]);
  if (attachment !== undefined) server.serializeAttachment(attachment);
  for (const m of first()) send(server, m);
  const protocol = request.headers.get("x-edgepulse-protocol");
  return new Response(null, {
    status: 101,
    webSocket: client,
    headers: protocol ? { "sec-websocket-protocol": protocol } : {},
  });
}

/** Clients may only send the heartbeat (answered by the runtime); anything else gets a typed error. */
export function answerClientMessage(ws: WebSocket, message: string | ArrayBuffer): void {
  if (!isClientMessage(message)) {
    send(ws, {
      type: "error",
      code: "unexpected_message",
      message: "Only the text 'ping' may be sent on this socket.",
    });
  }
}

export function closeSocket(ws: WebSocket, code: number): void {
  try {
    ws.close(code === 1005 ? 1000 : code);
  } catch {
    // already closed
  }
}
