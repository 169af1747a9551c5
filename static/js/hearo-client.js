/**
 * HearO realtime client: one topic, four tiers, and the REST heartbeat.
 *
 *   1. stomp  — STOMP over a WebSocket (/ws/stomp), via @stomp/stompjs
 *   2. sockjs — the same STOMP session over SockJS (/ws/sockjs): a WebSocket,
 *               else HTTP streaming, else long-polling
 *   3. raw    — plain JSON over a WebSocket (/ws/raw)
 *   4. poll   — REST polling every pollSeconds
 *
 * The client starts at the top and steps down when a tier fails to connect
 * or dies; while below the top it probes the better tiers in the background
 * with exponential backoff and steps back up as soon as one delivers. Every
 * (re)connect subscribes again, and the snapshot the server sends on
 * subscribe is taken as the truth; after it, a WAITING or QUEUE message
 * older (by `version`) than the newest seen is dropped, and so is a message
 * about an older change to the visit (by `seq`) than the newest seen. The REST heartbeat
 * runs every heartbeatSeconds whatever the tier.
 *
 * The links themselves are in tiers.js; page helpers in page.js.
 */

import { CONNECT_TIMEOUT_MS, LINKS, TIERS } from "./tiers.js";

export { TIERS };

// A tier that dies sooner than this after connecting is treated as failing:
// the client does not bounce straight back to it but lets the probe retry it.
const STABLE_AFTER_MS = 30000;
const RETRY_MIN_MS = 1000;
const VERSIONED = new Set(["WAITING", "QUEUE"]);

function kindOf(body) {
  return body.type ?? body.status;
}

export class HearoClient {
  /**
   * @param {object} options
   * @param {object} options.config       the page's json_script config
   * @param {string} options.destination  the STOMP topic to subscribe to
   * @param {object} [options.connectHeaders]  STOMP CONNECT headers (customer: Authorization)
   * @param {object} options.rawAuth      the raw tier's auth message
   * @param {() => Promise<object|object[]>} options.poll  one REST read (tier 4, and resyncs)
   * @param {() => Promise<void>} [options.heartbeat]      the REST heartbeat
   * @param {(body, meta) => void} options.onMessage       meta: {tier, snapshot}
   * @param {(tier, transport, healthy) => void} [options.onTier]
   * @param {(tier) => void} [options.onConnect]           after every (re)connect
   * @param {(reason) => void} [options.onRefused]         the server refused us
   */
  constructor(options) {
    this.options = options;
    this.config = options.config;
    this.tier = null;
    this.transport = "";
    this.link = null;
    this.version = -1;
    this.seq = -1; // the visit's newest change seen (customer messages carry it)
    this.running = false;
    this.retryMs = RETRY_MIN_MS;
    this.probeRunning = false;
    this.pending = new Set(); // links still trying to connect
    this._onOnline = () => this._probeSoon(0);
  }

  start() {
    if (this.running) return;
    this.running = true;
    this._descend(0);
    this._beat();
    this.beats = setInterval(() => this._beat(), this.config.heartbeatSeconds * 1000);
    window.addEventListener("online", this._onOnline);
  }

  stop() {
    this.running = false;
    clearInterval(this.beats);
    clearTimeout(this.probeTimer);
    window.removeEventListener("online", this._onOnline);
    for (const link of this.pending) link.close();
    this.pending.clear();
    this.link?.close();
    this.link = null;
  }

  /** Read the state over REST once and deliver it (a stale read still loses to newer pushes). */
  async resync() {
    try {
      for (const body of [].concat(await this.options.poll())) this._deliver(body, false);
    } catch {
      /* the tiers will catch up */
    }
  }

  // -- stepping down ------------------------------------------------------------

  async _descend(from) {
    this._setTier(null, "", true);
    for (let index = from; index < TIERS.length && this.running; index++) {
      const tier = TIERS[index];
      const result = await this._attempt(tier);
      if (!this.running) {
        result.link?.close();
        return;
      }
      if (result.link) {
        this._adopt(result.link, result.snapshot);
        return;
      }
      if (result.fatal) {
        this._refused(result.reason);
        return;
      }
    }
  }

  /** Open one link; resolve {link, snapshot} once it delivered, or {reason, fatal} if it failed. */
  _attempt(tier) {
    return new Promise((resolve) => {
      let settled = false;
      const settle = (result) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.pending.delete(link);
        resolve(result);
      };
      const link = new LINKS[tier](tier, this.options, {
        // The poll tier settles at once; its first answer comes later, as the snapshot.
        ready: (body) => (settled ? this._fromLink(link, body, true) : settle({ link, snapshot: body })),
        message: (body) => this._fromLink(link, body, false),
        down: (reason, fatal) => (settled ? this._lost(link, reason, fatal) : settle({ reason, fatal })),
        healthy: (ok) => this._fromLinkHealth(link, ok),
      });
      const limit = CONNECT_TIMEOUT_MS[tier];
      const timer = limit
        ? setTimeout(() => {
            link.close();
            settle({ reason: "timeout", fatal: false });
          }, limit)
        : null;
      this.pending.add(link);
      link.open();
      if (tier === "poll") settle({ link, snapshot: null });
    });
  }

  _adopt(link, snapshot) {
    const previous = this.link;
    this.link = link;
    this.adoptedAt = Date.now();
    previous?.close();
    this._setTier(link.tier, link.transport, true);
    if (snapshot) this._deliver(snapshot, true);
    else this.version = this.seq = -1; // the poll tier's first answer is the snapshot
    this.options.onConnect?.(link.tier);
    if (link.tier === TIERS[0]) {
      this.retryMs = RETRY_MIN_MS;
      clearTimeout(this.probeTimer);
    } else {
      this._probeLater();
    }
  }

  _lost(link, reason, fatal) {
    if (link !== this.link || !this.running) return;
    this.link = null;
    if (fatal) {
      this._refused(reason);
      return;
    }
    // Bounce straight back only to a tier that had been stable; one that
    // keeps dying is left to the probe, with its backoff.
    const index = TIERS.indexOf(link.tier);
    const stable = Date.now() - this.adoptedAt >= STABLE_AFTER_MS;
    this.retryMs = RETRY_MIN_MS;
    this.resync(); // keep the page current while we reconnect
    this._descend(stable ? 0 : Math.min(index + 1, TIERS.length - 1));
  }

  async _refused(reason) {
    // A refusal (ended visit, signed out, too many tabs) is not a network
    // problem: learn the truth over REST and let the page decide. If it
    // keeps us running, fall back to polling; the probe retries the rest.
    this._setTier(null, "", false);
    this.options.onRefused?.(reason);
    await this.resync();
    if (this.running && !this.link) this._descend(TIERS.length - 1);
  }

  // -- stepping back up ---------------------------------------------------------

  _probeLater() {
    clearTimeout(this.probeTimer);
    const jitter = 0.8 + Math.random() * 0.4;
    this.probeTimer = setTimeout(() => this._probe(), this.retryMs * jitter);
    this.retryMs = Math.min(this.retryMs * 2, this.config.retryMaxSeconds * 1000);
  }

  _probeSoon(delay) {
    if (!this.running || this.link === null || this.link.tier === TIERS[0]) return;
    this.retryMs = RETRY_MIN_MS;
    clearTimeout(this.probeTimer);
    this.probeTimer = setTimeout(() => this._probe(), delay);
  }

  async _probe() {
    if (!this.running || this.probeRunning || !this.link) return;
    this.probeRunning = true;
    try {
      const current = TIERS.indexOf(this.link.tier);
      for (let index = 0; index < current && this.running; index++) {
        const result = await this._attempt(TIERS[index]);
        if (!this.running || !this.link) {
          result.link?.close(); // the current tier died meanwhile; _descend took over
          return;
        }
        if (result.link) {
          this._adopt(result.link, result.snapshot);
          return;
        }
      }
      if (this.running && this.link) this._probeLater();
    } finally {
      this.probeRunning = false;
    }
  }

  // -- messages -------------------------------------------------------------------

  _fromLink(link, body, snapshot) {
    if (link !== this.link) return;
    // The server lost messages it meant for us (a Redis failover): read the truth over REST.
    if (body?.type === "RESYNC") this.resync();
    else this._deliver(body, snapshot);
  }

  _fromLinkHealth(link, ok) {
    if (link === this.link) this._setTier(link.tier, link.transport, ok);
  }

  _deliver(body, snapshot) {
    if (typeof body.seq === "number") {
      // Messages about one visit leave from several server processes; one
      // about an older change than the newest seen is stale (the snapshot,
      // again, is the truth).
      if (!snapshot && body.seq < this.seq) return;
      this.seq = body.seq;
    }
    if (VERSIONED.has(kindOf(body)) && typeof body.version === "number") {
      // A snapshot is the truth even if older (a server restarted its count);
      // otherwise a message computed from an older queue is stale news.
      if (!snapshot && body.version < this.version) return;
      this.version = body.version;
    }
    this.options.onMessage(body, { tier: this.tier, snapshot });
  }

  _setTier(tier, transport, healthy) {
    this.tier = tier;
    this.transport = transport;
    this.options.onTier?.(tier, transport, healthy);
  }

  async _beat() {
    try {
      await this.options.heartbeat?.();
    } catch {
      /* the next beat tries again; the lease outlives several misses */
    }
  }
}
