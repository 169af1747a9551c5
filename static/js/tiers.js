/**
 * One connection on one tier: the links the HearO client steps between.
 *
 * A link calls handlers.ready(body) once its first message (the snapshot)
 * arrived, handlers.message(body) for every later one, and
 * handlers.down(reason, fatal) once when it is gone; fatal means the server
 * refused us (another tier would be refused too). close() is idempotent and
 * silences the handlers.
 *
 * Globals: `StompJs` (stomp.umd.min.js) and `SockJS` (sockjs.min.js).
 */

export const TIERS = ["stomp", "sockjs", "raw", "poll"];

// How long a tier may take to deliver its snapshot before it counts as failed.
// SockJS gets longer: it may try a WebSocket and then HTTP streaming in turn.
export const CONNECT_TIMEOUT_MS = { stomp: 5000, sockjs: 10000, raw: 5000, poll: 0 };

function wsUrl(path) {
  const url = new URL(path, window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

/** What every tier's link shares: its handlers, the first-message-is-the-snapshot rule, going down once. */
class Link {
  constructor(tier, options, handlers, transport) {
    this.tier = tier;
    this.options = options;
    this.handlers = handlers;
    this.transport = transport;
    this.closed = false;
    this.first = true;
  }

  // The first body after (re)subscribing is the snapshot; the rest are updates.
  _deliver(body) {
    if (this.first) {
      this.first = false;
      this.handlers.ready(body);
    } else {
      this.handlers.message(body);
    }
  }

  _down(reason, fatal) {
    if (this.closed) return;
    this.close();
    this.handlers.down(reason, fatal);
  }
}

class StompLink extends Link {
  constructor(tier, options, handlers) {
    super(tier, options, handlers, tier === "stomp" ? "websocket" : "");
    this.socket = null;
  }

  open() {
    const { config, destination, connectHeaders } = this.options;
    const settings = {
      connectHeaders: connectHeaders ?? {},
      reconnectDelay: 0, // the tier manager decides where to reconnect
      heartbeatIncoming: 10000,
      heartbeatOutgoing: 10000,
      connectionTimeout: CONNECT_TIMEOUT_MS[this.tier],
      debug: config.debug ? (line) => console.debug(`[${this.tier}]`, line) : () => {},
    };
    if (this.tier === "stomp") {
      settings.brokerURL = wsUrl(config.stompUrl);
    } else {
      settings.webSocketFactory = () => {
        this.socket = new SockJS(config.sockjsUrl, null, { transports: config.sockjsTransports });
        return this.socket;
      };
    }
    const client = new StompJs.Client(settings);
    this.client = client;
    client.onConnect = () => {
      this.first = true;
      if (this.socket) this.transport = this.socket.transport ?? "";
      client.subscribe(destination, (frame) => {
        if (this.closed) return;
        this._deliver(JSON.parse(frame.body));
      });
    };
    // An ERROR frame is the server refusing us (bad token, ended visit):
    // another tier would be refused too.
    client.onStompError = (frame) => this._down(frame.headers.message || "refused", true);
    client.onWebSocketClose = (event) => this._down(`closed ${event.code}`, false);
    client.activate();
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    // A graceful DISCONNECT lets the server drop the subscription at once.
    this.client?.deactivate().catch(() => {});
  }
}

class RawLink extends Link {
  constructor(tier, options, handlers) {
    super(tier, options, handlers, "websocket");
  }

  open() {
    const { config, rawAuth } = this.options;
    const ws = new WebSocket(wsUrl(config.rawUrl));
    this.ws = ws;
    this.heardAt = Date.now();
    ws.onopen = () => ws.send(JSON.stringify(rawAuth));
    ws.onmessage = (event) => {
      if (this.closed) return;
      this.heardAt = Date.now();
      const body = JSON.parse(event.data);
      if (body.type === "pong") return;
      if (body.type === "error") {
        this._down(body.error, true);
        return;
      }
      this._deliver(body);
    };
    ws.onclose = (event) => this._down(`closed ${event.code}`, false);
    // Pings keep the socket (and the customer's lease) alive; a socket that
    // answers nothing for three intervals is dead even if it looks open.
    const every = Math.max(1, config.heartbeatSeconds) * 1000;
    this.pinger = setInterval(() => {
      if (Date.now() - this.heardAt > 3 * every) {
        this._down("silent", false);
      } else if (ws.readyState === WebSocket.OPEN) {
        ws.send('{"type":"ping"}');
      }
    }, every);
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pinger);
    try {
      this.ws?.close(1000);
    } catch {
      /* already closed */
    }
  }
}

class PollLink extends Link {
  constructor(tier, options, handlers) {
    super(tier, options, handlers, "http");
  }

  open() {
    // The floor: always "connects"; a failed poll just waits for the next.
    this.first = true;
    this._tick();
  }

  async _tick() {
    if (this.closed) return;
    try {
      const bodies = [].concat(await this.options.poll());
      for (const body of bodies) {
        if (this.closed) return;
        this._deliver(body);
      }
      this.handlers.healthy?.(true);
    } catch (error) {
      if (error?.fatal) {
        this._down(error.message, true);
        return;
      }
      this.handlers.healthy?.(false);
    }
    if (!this.closed) this.timer = setTimeout(() => this._tick(), this.options.config.pollSeconds * 1000);
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
  }
}

export const LINKS = { stomp: StompLink, sockjs: StompLink, raw: RawLink, poll: PollLink };
