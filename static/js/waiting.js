/**
 * The customer's waiting page: pick a line, join, watch the rank, cancel, join the call.
 *
 * The visit's bearer token lives in sessionStorage, so a reload (or a
 * restored tab) within the lease picks up the same place in the queue.
 */

import { HearoClient } from "./hearo-client.js";
import { api, ApiError, format, pageData, showTier } from "./page.js";
import { CallUnreachable, joinCall } from "./call.js";
import { allAlternatives, etaWords, LinePicker, renderAlternatives, whenWords } from "./waiting-lines.js";

const { config, strings } = pageData();
const $ = (id) => document.getElementById(id);
const ACTIVE = new Set(["WAITING", "MATCHED", "IN_CALL"]);
const BASE_TITLE = document.title;
// Refusals the page explains in its own words, with where to turn instead.
const REFUSALS = new Set(["queue_closed", "queue_full", "unknown_queue", "unsupported_language", "invalid"]);
// How often the join form re-reads the lines (one may open, fill up or close meanwhile).
const LINES_REFRESH_MS = 30_000;
const EMERGENCY = { label: strings["emergency"], phone: config.emergencyPhone };

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
  if (!message) $("refused").hidden = true;
}

/** Set a text only when it changes: a live region re-reads whatever is set. */
function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

function errorText(error) {
  if (error instanceof ApiError) {
    if (error.status === 0) return strings["error.network"];
    if (error.code === "rate_limited") return strings["error.rate_limited"];
    return format(strings["error.generic"], { detail: error.detail });
  }
  return format(strings["error.generic"], { detail: String(error?.message ?? error) });
}

function etaText(body) {
  const words = etaWords(body.estimatedWaitSeconds, strings);
  if (words) return words;
  return body.estimatedWaitReason === "closed" ? strings["eta.closed"] : strings["eta.estimating"];
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
  const changed = $("rank").textContent !== String(rank);
  // Why the number went up stays until the number changes again for another reason.
  if (body.reason === "urgent_ahead") setText($("rank-reason"), strings["rank.urgent_ahead"]);
  else if (changed) setText($("rank-reason"), "");
  setText($("rank"), String(rank));
  setText($("rank-note"), body.rank === 1 ? strings["rank.next"] : "");
  setText($("eta"), etaText(body));
  setText($("eta-reason"), strings[`eta.why.${body.estimatedWaitReason}`] ?? "");
  if (body.queueId) renderLine(body.queueId);
  setStatus($("status-text"), "WAITING");
  document.title = body.rank ? `(${body.rank}) ${BASE_TITLE}` : BASE_TITLE;
}

/** Name the customer's line; when an overflow moved it, say so (its time waited counts there too). */
function renderLine(queueId) {
  const current = visit.load();
  if (current?.queueId && current.queueId !== queueId) {
    const queue = picker.queue(queueId);
    const language = queue && !queue.languages.includes(current.language) ? queue.languages[0] : current.language;
    visit.save({ ...current, queueId, language });
    $("moved-note").textContent = format(strings["moved"], { queue: queueName(queueId) });
    $("moved-note").hidden = false;
  } else if (current && !current.queueId) {
    visit.save({ ...current, queueId });
  }
  setText($("queue-line"), lineText(visit.load() ?? { queueId }));
  renderUrgentNote();
}

function queueName(queueId) {
  return picker.queue(queueId)?.name ?? config.queueNames?.[queueId] ?? queueId;
}

function lineText({ queueId, language }) {
  const languages = picker.queue(queueId)?.languages;
  // The language is worth naming only where the line serves more than one.
  if (!language || (languages && languages.length < 2)) return queueName(queueId);
  const languageName = config.languageNames?.[language] ?? language;
  return format(strings["line.value"], { queue: queueName(queueId), language: languageName });
}

/** Beside an urgent customer's rank: where to call if waiting is too long. */
function renderUrgentNote() {
  const current = visit.load();
  $("urgent-note").hidden = !current?.urgent;
  if (!current?.urgent) return;
  const alternatives = picker.queue(current.queueId)?.alternatives;
  renderAlternatives($("waiting-alternatives"), alternatives, { emergency: EMERGENCY });
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

/** Join the line ``choice`` names ({queueId?, language?, urgent?}); say plainly why if refused. */
async function join(displayName, choice) {
  showError(null);
  const previous = visit.load(); // a returning customer keeps its customer id
  let joined;
  try {
    joined = await api("POST", "/api/queue/join", {
      headers: previous ? { Authorization: `Bearer ${previous.token}` } : {},
      body: { ...(displayName ? { displayName } : {}), ...choice },
    });
  } catch (error) {
    if (!(error instanceof ApiError && REFUSALS.has(error.code))) throw error;
    showRefusal(error);
    return;
  }
  const { token, customerId, queueId, language, urgent } = joined;
  visit.save({ token, customerId, displayName, choice, queueId, language, urgent });
  $("moved-note").hidden = true;
  setText($("rank-reason"), "");
  // A fresh visit shows its rank at once; one already matched needs its room first.
  if (joined.status === "WAITING") render({ status: "WAITING", rank: joined.rank, queueId, estimatedWaitSeconds: null });
  else await checkVisit();
  // The form is gone: take keyboard and screen-reader users to where their place is shown.
  if (!$("view-waiting").hidden) $("waiting-title").focus();
  startClient();
}

/** The join form's choice: the line, its language and the urgent answer. */
function formChoice() {
  return { ...picker.choice(), ...($("urgent").checked ? { urgent: true } : {}) };
}

/** Say why a join was refused, when the line opens and where to turn now; offer the choices again. */
function showRefusal(error) {
  const body = error.body ?? {};
  $("refused-text").textContent = strings[`refused.${error.code}`] ?? errorText(error);
  $("refused-opens").hidden = !body.opensAt;
  if (body.opensAt) $("refused-opens").textContent = format(strings["refused.opens"], { when: whenWords(body.opensAt, strings) });
  // Closed or full: the line's own alternatives, and always the emergency number.
  const turnTo = error.status === 409;
  $("refused-help").hidden = !turnTo;
  if (turnTo) renderAlternatives($("refused-alternatives"), body.alternatives, { emergency: EMERGENCY });
  if (shownStatus !== "WAITING") {
    show("join"); // from "Join the queue again": let the customer pick another line
    if (!$("display-name").value) $("display-name").value = visit.load()?.displayName ?? "";
  }
  $("refused").hidden = false;
  $("refused").focus();
  loadLines();
}

// --- The lines to choose from ------------------------------------------------------

const picker = new LinePicker({
  topicField: $("topic-field"),
  topicOptions: $("topic-options"),
  languageField: $("language-field"),
  languageOptions: $("language-options"),
  config,
  strings,
  onChange: () => renderChoiceHelp(),
});

/** Read GET /api/queues into the form; on failure the form joins the default line as before. */
async function loadLines() {
  try {
    picker.update(await api("GET", "/api/queues"));
  } catch {
    return;
  }
  renderChoiceHelp();
  const current = visit.load();
  if (current?.queueId && !$("view-waiting").hidden) setText($("queue-line"), lineText(current));
  renderUrgentNote();
}

/** Show the picked line's alternatives beside the urgent question, and what to do when nothing is open. */
function renderChoiceHelp() {
  const queues = picker.queues ?? [];
  renderAlternatives($("urgent-alternatives"), picker.selectedQueue()?.alternatives, { emergency: EMERGENCY });
  const noneOpen = !picker.canJoin();
  $("none-open").hidden = !noneOpen;
  if (noneOpen) renderAlternatives($("none-open-alternatives"), allAlternatives(queues), { emergency: EMERGENCY });
  $("urgent-field").hidden = noneOpen;
  $("join-button").disabled = noneOpen;
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
    guarded($("join-button"), () => join($("display-name").value.trim(), formChoice())),
  );
  $("cancel-button").addEventListener("click", guarded($("cancel-button"), cancel));
  $("leave-button").addEventListener("click", guarded($("leave-button"), cancel));
  $("rejoin-button").addEventListener(
    "click",
    // The same line as last time, without asking again.
    guarded($("rejoin-button"), () => join(visit.load()?.displayName ?? "", visit.load()?.choice ?? {})),
  );
  $("join-call-button").addEventListener("click", startCall);
  window.addEventListener("pagehide", () => room?.disconnect());
}

async function boot() {
  wire();
  renderChoiceHelp();
  loadLines();
  setInterval(() => $("view-join").hidden || loadLines(), LINES_REFRESH_MS);
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
