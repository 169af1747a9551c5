/**
 * The customer's waiting page: join, watch the rank, cancel, join the call.
 *
 * The visit's bearer token lives in sessionStorage, so a reload (or a
 * restored tab) within the lease picks up the same place in the queue.
 */

import { HearoClient } from "./hearo-client.js";
import { api, ApiError, format, pageData, showTier } from "./page.js";
import { CallUnreachable, joinCall } from "./call.js";

const { config, strings } = pageData();
const $ = (id) => document.getElementById(id);
const ACTIVE = new Set(["WAITING", "MATCHED", "IN_CALL"]);
const BASE_TITLE = document.title;

// --- The visit in sessionStorage -------------------------------------------------

const STORE_KEY = "hearo.visit";
const visit = {
  load() {
    try {
      return JSON.parse(sessionStorage.getItem(STORE_KEY)) ?? null;
    } catch {
      return null;
    }
  },
  save(value) {
    sessionStorage.setItem(STORE_KEY, JSON.stringify(value));
  },
  clear() {
    sessionStorage.removeItem(STORE_KEY);
  },
};

function bearer() {
  const current = visit.load();
  return current ? { Authorization: `Bearer ${current.token}` } : {};
}

// --- Views --------------------------------------------------------------------------

let client = null;
let room = null;
let shownStatus = null;
let lastState = null; // the newest state shown (for the call's matchId)

function show(view) {
  for (const section of document.querySelectorAll("#waiting-app > .view")) {
    section.hidden = section.id !== `view-${view}`;
  }
  const app = $("waiting-app");
  app.dataset.view = view;
  app.setAttribute("aria-busy", "false");
}

function showError(message) {
  const box = $("error");
  box.textContent = message ?? "";
  box.hidden = !message;
}

function errorText(error) {
  if (error instanceof ApiError) {
    if (error.status === 0) return strings["error.network"];
    if (error.code === "rate_limited") return strings["error.rate_limited"];
    return format(strings["error.generic"], { detail: error.detail });
  }
  return format(strings["error.generic"], { detail: String(error?.message ?? error) });
}

function etaText(seconds) {
  if (seconds === null || seconds === undefined) return strings["eta.estimating"];
  if (seconds < 60) return strings["eta.soon"];
  return format(strings["eta.minutes"], { minutes: Math.round(seconds / 60) });
}

function announce(text) {
  // Re-set the text so a repeated announcement is read again.
  const announcer = $("announcer");
  announcer.textContent = "";
  requestAnimationFrame(() => (announcer.textContent = text));
}

function renderWaiting(body) {
  show("waiting");
  const rank = body.rank ?? "–";
  if ($("rank").textContent !== String(rank)) $("rank").textContent = String(rank);
  $("rank-note").textContent = body.rank === 1 ? strings["rank.next"] : "";
  $("eta").textContent = etaText(body.estimatedWaitSeconds);
  setStatus($("status-text"), "WAITING");
  document.title = body.rank ? `(${body.rank}) ${BASE_TITLE}` : BASE_TITLE;
}

function renderMatched(body) {
  show("matched");
  $("room-name").textContent = body.roomName;
  setStatus($("matched-status"), body.status);
  $("join-call-button").hidden = room !== null;
  document.title = `● ${BASE_TITLE}`;
}

function renderEnded(body) {
  stopClient();
  show("ended");
  $("ended-title").textContent = strings[`status.${body.status}`] ?? body.status;
  $("ended-text").textContent = endedText(body);
  document.title = BASE_TITLE;
}

function endedText(body) {
  if (body.status === "COMPLETED") return strings["ended.completed"];
  if (body.status === "CANCELLED") return strings["ended.cancelled"];
  return strings[`ended.${body.reason}`] ?? strings["ended.default"];
}

function setStatus(element, status) {
  element.textContent = strings[`status.${status}`] ?? status;
  element.dataset.status = status;
}

/** Show one state of the visit (a push, a poll answer or a REST reply). */
function render(body) {
  if (!body?.status) return;
  const changed = body.status !== shownStatus;
  shownStatus = body.status;
  if (body.status === "WAITING") renderWaiting(body);
  else if (body.status === "MATCHED" || body.status === "IN_CALL") renderMatched(body);
  else renderEnded(body);
  if (changed && body.status !== "WAITING") {
    announce(strings[`announce.${body.status}`] ?? strings[`status.${body.status}`] ?? body.status);
  }
  lastState = body;
}

// --- The realtime client ------------------------------------------------------------

function startClient() {
  stopClient();
  const current = visit.load();
  $("tier").hidden = false;
  client = new HearoClient({
    config,
    destination: `/topic/queue-rank/${current.customerId}`,
    connectHeaders: { Authorization: `Bearer ${current.token}` },
    rawAuth: { type: "auth", token: current.token },
    poll: () => api("GET", "/api/queue/rank", { headers: bearer() }),
    heartbeat,
    onMessage: (body) => render(body),
    onTier: (tier, transport, healthy) => showTier($("tier"), strings, config, tier, transport, healthy),
    onRefused: () => checkVisit(),
  });
  window.hearoClient = client; // for support and the browser tests
  client.start();
}

function stopClient() {
  client?.stop();
  client = null;
  $("tier").hidden = true;
}

async function heartbeat() {
  try {
    await api("POST", "/api/queue/heartbeat", { headers: bearer() });
  } catch (error) {
    // 409: the visit ended (or was matched away); 401: it is gone. Learn which.
    if (error instanceof ApiError && (error.status === 409 || error.status === 401)) await checkVisit();
  }
}

/** Read the visit over REST and show it; forget a token the server no longer knows. */
async function checkVisit() {
  try {
    render(await api("GET", "/api/queue/rank", { headers: bearer() }));
    return true;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      visit.clear();
      stopClient();
      show("join");
    }
    return false;
  }
}

// --- Actions ------------------------------------------------------------------------

async function join(displayName) {
  showError(null);
  const previous = visit.load(); // a returning customer keeps its customer id
  const joined = await api("POST", "/api/queue/join", {
    headers: previous ? { Authorization: `Bearer ${previous.token}` } : {},
    body: displayName ? { displayName } : {},
  });
  visit.save({ token: joined.token, customerId: joined.customerId, displayName });
  // A fresh visit shows its rank at once; one already matched needs its room first.
  if (joined.status === "WAITING") render({ status: "WAITING", rank: joined.rank, estimatedWaitSeconds: null });
  else await checkVisit();
  startClient();
}

async function cancel() {
  showError(null);
  const { status } = await api("POST", "/api/queue/cancel", { headers: bearer() });
  render({ status, reason: "cancelled" });
}

async function startCall() {
  const button = $("join-call-button");
  button.disabled = true;
  const matchId = lastState?.matchId;
  try {
    room = await joinCall({
      grant: () => api("POST", "/api/livekit/token", { headers: bearer(), body: matchId ? { matchId } : {} }),
      confirm: () => api("POST", `/api/matches/${matchId}/joined`, { headers: bearer() }),
      livekitUrl: config.livekitUrl,
      livekitScript: config.livekitScript,
      onStep: (step) => ($("call-status").textContent = strings[`call.${step}`]),
      audioHost: $("waiting-app"),
    });
    button.hidden = true;
  } catch (error) {
    const text =
      error instanceof CallUnreachable
        ? strings["call.unreachable"]
        : format(strings["call.failed"], { detail: error.detail ?? error.message });
    $("call-status").textContent = text;
    $("call-status").dataset.state = "error";
  } finally {
    button.disabled = false;
  }
}

function guarded(button, action) {
  return async (event) => {
    event?.preventDefault();
    button.disabled = true;
    try {
      await action();
    } catch (error) {
      showError(errorText(error));
    } finally {
      button.disabled = false;
    }
  };
}

// --- Boot -----------------------------------------------------------------------------

function wire() {
  $("join-form").addEventListener(
    "submit",
    guarded($("join-button"), () => join($("display-name").value.trim())),
  );
  $("cancel-button").addEventListener("click", guarded($("cancel-button"), cancel));
  $("leave-button").addEventListener("click", guarded($("leave-button"), cancel));
  $("rejoin-button").addEventListener(
    "click",
    guarded($("rejoin-button"), () => join(visit.load()?.displayName ?? "")),
  );
  $("join-call-button").addEventListener("click", startCall);
  window.addEventListener("pagehide", () => room?.disconnect());
}

async function boot() {
  wire();
  if (!visit.load()) {
    show("join");
    return;
  }
  const known = await checkVisit();
  if (!visit.load()) return; // the server forgot the token; the join form is showing
  if (!known) show("waiting"); // the network is down: the client will catch up
  if (!known || ACTIVE.has(lastState?.status)) startClient();
}

boot();
