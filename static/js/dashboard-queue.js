/**
 * The dashboard's queue panel: the lines this counselor serves, how many wait
 * and the longest wait. The longest wait runs on between updates while the
 * dashboard hears the server, and is held, greyed and dated while it does not.
 */

import { format } from "./page.js";

const $ = (id) => document.getElementById(id);

export class QueuePanel {
  constructor({ config, strings }) {
    this.config = config;
    this.strings = strings;
    this.queue = { waiting: null, longestWaitSeconds: null, queues: [], version: -1, at: 0 };
    this.myQueues = null; // the queue ids this counselor serves (null until the first profile)
    this.live = false; // the dashboard hears the server (a healthy tier)
    this.freshAt = 0; // performance.now() when the figures were last known current
    this.wasStale = false;
  }

  /** The counselor's queues in the service's order (the order of config.queueNames), unknown ones last. */
  ordered(queueIds) {
    const order = Object.keys(this.config.queueNames ?? {});
    const rank = (id) => (order.includes(id) ? order.indexOf(id) : order.length);
    return [...queueIds].sort((a, b) => rank(a) - rank(b));
  }

  renderProfile(counselor) {
    const { config, strings } = this;
    this.myQueues = counselor.queues ? this.ordered(counselor.queues) : null;
    const names = (this.myQueues ?? []).map((id) => config.queueNames?.[id] ?? id);
    const languages = (counselor.languages ?? []).map((code) => config.languageNames?.[code] ?? code);
    $("skills-line").textContent = names.length
      ? format(strings["skills.line"], { queues: names.join(", "), languages: languages.join(", ") || "—" })
      : strings["skills.none"];
  }

  render(body) {
    const { queue, myQueues } = this;
    if (typeof body.version === "number" && body.version < queue.version) return;
    // The counselor's own queues count, each one shown even while nobody waits in it;
    // the service's total only until the profile is known.
    const lines = new Map((body.queues ?? []).map((line) => [line.queueId, line]));
    const mine =
      myQueues === null
        ? [...lines.values()]
        : myQueues.map((queueId) => lines.get(queueId) ?? { queueId, waiting: 0, longestWaitSeconds: null });
    const heads = mine.map((line) => line.longestWaitSeconds).filter((s) => s !== null && s !== undefined);
    const own = body.queues && myQueues !== null;
    this.queue = {
      waiting: own ? mine.reduce((sum, line) => sum + line.waiting, 0) : body.waiting,
      longestWaitSeconds: own ? (heads.length ? Math.max(...heads) : null) : body.longestWaitSeconds,
      queues: mine,
      version: body.version ?? queue.version,
      at: performance.now(),
    };
    $("queue-waiting").textContent = String(this.queue.waiting);
    this.renderLines();
    this.tick();
  }

  /** One row per queue the counselor serves, when there is more than one to tell apart. */
  renderLines() {
    $("queue-lines").hidden = this.queue.queues.length < 2;
    const body = $("queue-lines-body");
    body.replaceChildren();
    for (const line of this.queue.queues) {
      const row = body.insertRow();
      row.dataset.queueId = line.queueId;
      row.dataset.waiting = String(line.waiting);
      row.insertCell().textContent = this.config.queueNames?.[line.queueId] ?? line.queueId;
      row.insertCell().textContent = String(line.waiting);
      row.insertCell().className = "longest";
    }
  }

  longestLine() {
    const waited = this.queue.queues.filter((l) => l.longestWaitSeconds !== null && l.longestWaitSeconds !== undefined);
    return waited.length < 2 ? null : waited.reduce((a, b) => (b.longestWaitSeconds > a.longestWaitSeconds ? b : a));
  }

  waitText(seconds) {
    const { strings } = this;
    if (seconds === null || seconds === undefined) return strings["queue.none"];
    if (seconds < 60) return format(strings["queue.seconds"], { seconds });
    return format(strings["queue.minutes"], { minutes: Math.floor(seconds / 60), seconds: seconds % 60 });
  }

  /** Run the longest wait on while live; while not, hold it where it was last known true and say how old it is. */
  tick() {
    const { queue } = this;
    const now = performance.now();
    if (this.live) this.freshAt = now;
    const upTo = this.live ? now : Math.max(this.freshAt, queue.at);
    const grown = Math.floor((upTo - queue.at) / 1000);
    const longest = (base) => (base === null || base === undefined ? null : base + grown);
    const stale = !this.live && queue.at > 0;
    this.wasStale ||= stale;
    $("queue-stats").dataset.stale = String(stale);
    $("queue-lines").dataset.stale = String(stale);
    $("queue-stale").hidden = !stale;
    if (stale) {
      const seconds = Math.floor((now - upTo) / 1000);
      $("queue-stale").textContent = format(this.strings["queue.stale"], { seconds });
    }
    $("queue-longest").textContent = this.waitText(longest(queue.longestWaitSeconds));
    const head = this.longestLine();
    queue.queues.forEach((line, index) => {
      const row = $("queue-lines-body").rows[index];
      const cell = row?.querySelector(".longest");
      if (cell) cell.textContent = this.waitText(longest(line.longestWaitSeconds));
      // Point at the line whose first customer has waited longest (ties: the first such line).
      row?.classList.toggle("is-longest", line === head);
    });
  }

  /** Follow the connection; return true when it came back after the figures were shown stale. */
  connection(live) {
    if (live === this.live) return false;
    if (!live) this.freshAt = performance.now(); // true up to this moment
    this.live = live;
    const back = live && this.wasStale;
    if (live) this.wasStale = false;
    this.tick();
    return back;
  }
}
