/**
 * The customer's waiting page: pick a line, join, watch the rank, cancel, join the call.
 *
 * The visit's bearer token lives in sessionStorage, so a reload (or a
 * restored tab) within the lease picks up the same place in the queue.
 */

import { HearoClient } from "./hearo-client.js";
import { api, ApiError, format, pageData, showTier } from "./page.js";
import { CallUnreachable, joinCall } from "./call.js";
import { MicCheck } from "./mic-check.js";
import { Alerts, canAskNotifications } from "./waiting-alerts.js";
import { allAlternatives, etaWords, LinePicker, renderAlternatives, waitedWords, whenWords } from "./waiting-lines.js";

const { config, strings } = pageData();
const $ = (id) => document.getElementById(id);
const ACTIVE = new Set(["WAITING", "MATCHED", "IN_CALL"]);
const BASE_TITLE = document.title;
// Refusals the page explains in its own words, with where to turn instead.
const REFUSALS = new Set(["queue_closed", "queue_full", "unknown_queue", "unsupported_language", "invalid"]);
// How often the join form re-reads the lines (one may open, fill up or close meanwhile).
const LINES_REFRESH_MS = 30_000;
const EMERGENCY = { label: strings["emergency"], phone: config.emergencyPhone };
// Back in line after a hand-off that did not work: each says why, and that it is not the customer's fault.
const BACK_REASONS = new Set(["call_failed", "released", "counselor_no_show", "call_dropped"]);
// A connection down this long makes the rank shown "last updated N s ago" (a tier switch takes less).
const STALE_AFTER_MS = 5000;
// Where focus goes when a view appears: its heading.
const HEADINGS = { join: "join-title", waiting: "waiting-title", matched: "matched-title", call: "matched-title", ended: "ended-title" };

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
let booted = false; // after boot, every change of view moves the focus to its heading
let joining = false; // a joinCall is under way
let callDropped = false; // our own side of the call dropped (the room said so)
let failedLocally = null; // the call-failed reason this page reported, until the server answers

/** Show one view; after boot, a new view takes the focus to its heading (or ``focus``, when given). */
function show(view, { focus } = {}) {
  const section = view === "call" ? "matched" : view;
  for (const element of document.querySelectorAll("#waiting-app > .view")) {
    element.hidden = element.id !== `view-${section}`;
  }
  const app = $("waiting-app");
  const changed = app.dataset.view !== view;
  app.dataset.view = view;
  app.setAttribute("aria-busy", "false");
  if ((changed && booted) || focus) $(focus ?? HEADINGS[view])?.focus();
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

/** The estimate in words: a number, or why there is none; never blank (null: keep what is shown). */
function etaText(body) {
  const words = etaWords(body.estimatedWaitSeconds, strings);
  if (words) return words;
  if (body.estimatedWaitReason === "closed") return strings["eta.closed"];
  if (body.estimatedWaitReason === "no_counselor_online") return strings["eta.no_counselor_online"];
  return null;
}

function announce(text) {
  // Re-set the text so a repeated announcement is read again.
  const announcer = $("announcer");
  announcer.textContent = "";
  requestAnimationFrame(() => (announcer.textContent = text));
}

function renderWaiting(body, previous) {
  const back = backReason(body, previous);
  if (back) renderBack(back);
  show("waiting", back && previous !== "WAITING" ? { focus: "back-title" } : {});
  const rank = body.rank ?? "–";
  const shownRank = Number($("rank").textContent);
  const changed = $("rank").textContent !== String(rank);
  // Why the number went up stays until the number changes again for another reason.
  if (body.reason === "urgent_ahead") setText($("rank-reason"), strings["rank.urgent_ahead"]);
  else if (changed) setText($("rank-reason"), "");
  setText($("rank"), String(rank));
  setText($("rank-note"), strings[`rank.note.${body.rank}`] ?? "");
  if (shownRank > body.rank) nudge(body.rank);
  const eta = etaText(body);
  if (eta !== null || !$("eta").textContent) setText($("eta"), eta ?? strings["eta.checking"]);
  setText($("eta-reason"), strings[`eta.why.${body.estimatedWaitReason}`] ?? "");
  if (body.queueId) renderLine(body.queueId);
  setStatus($("status-text"), "WAITING");
  renderWaited();
  document.title = body.rank ? `(${body.rank}) ${BASE_TITLE}` : BASE_TITLE;
}

/** The reason to explain a return to the line: the server's, else what this page saw happen. */
function backReason(body, previous) {
  if (BACK_REASONS.has(body.reason)) return body.reason;
  if (previous === "MATCHED" || previous === "IN_CALL") return failedLocally ? "call_failed" : "default";
  // A reload keeps the explanation until the next match.
  return previous === null ? visit.load()?.back ?? null : null;
}

function renderBack(reason) {
  const current = visit.load();
  if (current && current.back !== reason) visit.save({ ...current, back: reason });
  setText($("back-title"), strings[`back.${reason}.title`] ?? strings["back.default.title"]);
  setText($("back-text"), strings[`back.${reason}`] ?? strings["back.default"]);
  $("back-note").hidden = false;
  failedLocally = null;
}

function clearBack() {
  $("back-note").hidden = true;
  const current = visit.load();
  if (current?.back) visit.save({ ...current, back: null });
}

/** "You're next", gently, once each at ranks 2 and 1 (the rank region already says it aloud). */
function nudge(rank) {
  const current = visit.load();
  if (!current || (rank !== 1 && rank !== 2) || current.nudged?.includes(rank)) return;
  visit.save({ ...current, nudged: [...(current.nudged ?? []), rank] });
  alerts.nudge({ title: strings[`rank.note.${rank}`], body: strings["notify.keep_open"] });
}

/** How long the customer has waited (since joining; a return to the line keeps the time). */
function renderWaited() {
  const since = visit.load()?.joinedAt;
  if (since) setText($("waited"), waitedWords(Date.now() - since, strings));
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
  renderHelp();
}

/** Everyone's quiet "if waiting gets too hard": the line's crisis alternatives and the emergency number. */
function renderHelp() {
  const current = visit.load();
  const alternatives = picker.queue(current?.queueId)?.alternatives;
  $("help-now").hidden = Boolean(current?.urgent); // the urgent note lists them already
  renderAlternatives($("help-alternatives"), alternatives, { emergency: EMERGENCY });
}

function queueName(queueId) {
  return picker.queue(queueId)?.name ?? config.queueNames?.[queueId] ?? queueId;
}

function lineText({ queueId, language }) {
  const languages = picker.queue(queueId)?.languages;
  // The language is worth naming only where the line serves more than one.
  if (!language || (languages && languages.length < 2)) return queueName(queueId);
  const languageName = config.languageNames?.[language] ?? ownName(language);
  return format(strings["line.value"], { queue: queueName(queueId), language: languageName });
}

/** A language named in itself (한국어, English), where the page was rendered before any line served it. */
function ownName(code) {
  try {
    return new Intl.DisplayNames([code], { type: "language" }).of(code) ?? code;
  } catch {
    return code;
  }
}

/** Beside an urgent customer's rank: where to call if waiting is too long. */
function renderUrgentNote() {
  const current = visit.load();
  $("urgent-note").hidden = !current?.urgent;
  if (!current?.urgent) return;
  const alternatives = picker.queue(current.queueId)?.alternatives;
  renderAlternatives($("waiting-alternatives"), alternatives, { emergency: EMERGENCY });
}

function renderMatched(body, previous) {
  const inCall = body.status === "IN_CALL";
  const fresh = previous !== "MATCHED" && previous !== "IN_CALL";
  if (fresh) clearBack();
  // The heading's text first: focus (on a change of view) reads it.
  const name = body.counselorName;
  const key = inCall ? "call.title" : "matched.title";
  setText($("matched-title"), name ? format(strings[`${key}.named`], { name }) : strings[key]);
  setText($("matched-lede"), inCall ? "" : strings["matched.lede"]);
  show(inCall ? "call" : "matched");
  // The room's id is for support staff only (in the footer's details), never the customer's view.
  setText($("room-name"), body.roomName ?? "");
  $("room-line").hidden = !body.roomName;
  setStatus($("matched-status"), body.status);
  renderCallControls(body);
  if (fresh && previous !== null) {
    const title = name ? format(strings["matched.title.named"], { name }) : strings["matched.title"];
    alerts.matched({ title, body: strings["notify.matched_body"], flash: strings["title.flash"] });
  }
  if (!alerts.flashing) document.title = `● ${BASE_TITLE}`;
  renderHelp();
  tick();
}

/** Which of Join, Reconnect and the interruption note the match calls for. */
function renderCallControls(body) {
  const inCall = body.status === "IN_CALL";
  const interrupted = body.interrupted ?? (callDropped ? { side: "customer" } : null);
  // Our side is out of a call that is on: the page was reloaded, or the line dropped.
  const ownSideOut = room === null && (inCall || callDropped);
  $("matched-block").hidden = inCall || room !== null;
  $("join-call-button").hidden = room !== null || ownSideOut || joining;
  $("reconnect-button").hidden = !ownSideOut || joining;
  $("interrupted-note").hidden = !interrupted;
  if (interrupted) {
    const side = interrupted.side === "counselor" ? "counselor" : "customer";
    setText($("interrupted-title"), strings[`interrupted.${side}.title`]);
  }
}

function renderEnded(body) {
  stopClient();
  leaveCall();
  clearBack();
  $("ended-title").textContent = strings[`status.${body.status}`] ?? body.status;
  $("ended-text").textContent = endedText(body);
  show("ended");
  document.title = BASE_TITLE;
}

function endedText(body) {
  if (body.reason === "call_dropped") return strings["ended.call_dropped"];
  if (body.status === "COMPLETED") return strings["ended.completed"];
  if (body.status === "CANCELLED") return strings["ended.cancelled"];
  return strings[`ended.${body.reason}`] ?? strings["ended.default"];
}

/** Let go of the call and everything that belonged to the match. */
function leaveCall() {
  room?.disconnect();
  room = null;
  callDropped = false;
  alerts.stopFlashing();
  for (const check of micChecks) check.stop();
}

// --- The clock: countdowns, the time waited, the stale marker ------------------------

let lastLiveAt = Date.now(); // the last moment the rank shown was known to be current
let live = false;
let staleShown = false;

function clockText(ms) {
  const seconds = Math.max(0, Math.ceil(ms / 1000));
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
}

/** Once a second: nothing here is a live region, so nothing is re-read on every tick. */
function tick() {
  const now = Date.now();
  if (live) lastLiveAt = now;
  const state = lastState ?? {};
  const deadline = state.status === "MATCHED" && room === null ? state.joinDeadline : null;
  $("deadline-row").hidden = !deadline;
  if (deadline) setText($("join-countdown"), deadline > now ? clockText(deadline - now) : strings["countdown.over"]);
  const interrupted = state.status === "IN_CALL" ? state.interrupted : null;
  if (interrupted || callDropped) {
    const side = interrupted?.side === "counselor" ? "counselor" : "customer";
    const until = interrupted?.reconnectUntil;
    const text = until
      ? format(strings[`interrupted.${side}`], { time: clockText(until - now) })
      : strings["interrupted.customer.now"];
    setText($("interrupted-text"), text);
  }
  if (state.status === "WAITING") renderWaited();
  renderStale(now);
}

/** While the connection is down, the rank shown is dated and greyed; when it is back, say so once. */
function renderStale(now) {
  const stale = !live && client !== null && shownStatus === "WAITING" && now - lastLiveAt > STALE_AFTER_MS;
  $("rank-box").dataset.stale = String(stale);
  $("stale-note").hidden = !stale;
  if (stale) {
    const seconds = Math.round((now - lastLiveAt) / 1000);
    const text =
      seconds < 60
        ? format(strings["stale.seconds"], { seconds })
        : format(strings["stale.minutes"], { minutes: Math.floor(seconds / 60) });
    setText($("stale-note"), text);
  }
  if (stale && !staleShown) announceConnection(strings["connection.lost"]);
  if (!stale && staleShown && live) announceConnection(strings["connection.back"]);
  staleShown = stale;
}

function announceConnection(text) {
  const region = $("connection-announcer");
  region.textContent = "";
  requestAnimationFrame(() => (region.textContent = text));
}

/** The tier in plain words; the transport itself goes to the support details. */
function renderTier(tier, transport, healthy) {
  showTier($("tier"), strings, config, tier, transport, healthy);
  live = Boolean(tier) && healthy !== false;
  let text;
  if (!tier) text = healthy ? strings["connection.connecting"] : strings["connection.offline"];
  else if (!healthy) text = strings["connection.offline"];
  else text = format(strings[`connection.${tier}`] ?? strings["connection.stomp"], { seconds: config.pollSeconds });
  setText($("connection-text"), text);
  $("tier").title = $("tier-text").textContent;
  if (live) tick();
}

function setStatus(element, status) {
  element.textContent = strings[`status.${status}`] ?? status;
  element.dataset.status = status;
}

/** Show one state of the visit (a push, a poll answer or a REST reply). */
function render(body) {
  if (!body?.status) return;
  const previous = shownStatus;
  const changed = body.status !== previous;
  shownStatus = body.status;
  lastState = body;
  if (body.status !== "MATCHED" && body.status !== "IN_CALL") leaveCallIfOver(body);
  if (body.status === "WAITING") renderWaiting(body, previous);
  else if (body.status === "MATCHED" || body.status === "IN_CALL") renderMatched(body, previous);
  else renderEnded(body);
  // The new view's heading takes the focus and is read; this says it to whoever is not looking at it.
  if (changed && body.status !== "WAITING" && !(booted && previous !== null)) {
    announce(strings[`announce.${body.status}`] ?? strings[`status.${body.status}`] ?? body.status);
  }
}

function leaveCallIfOver(body) {
  if (room || callDropped || alerts.flashing) leaveCall();
  if (body.status !== "WAITING") failedLocally = null;
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
    onMessage: (body) => {
      lastLiveAt = Date.now();
      render(body);
    },
    onTier: renderTier,
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
    const body = await api("GET", "/api/queue/rank", { headers: bearer() });
    lastLiveAt = Date.now();
    render(body);
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
  alerts.prepare(); // this click is the moment to ask for notifications and to unlock the chime
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
  // The time waited counts from here; the same visit again (already in line) keeps its start.
  const same = previous?.token === token && previous?.joinedAt && ACTIVE.has(shownStatus);
  const joinedAt = same ? previous.joinedAt : Date.now();
  visit.save({ token, customerId, displayName, choice, queueId, language, urgent, joinedAt, nudged: [] });
  $("moved-note").hidden = true;
  clearBack();
  setText($("rank-reason"), "");
  setText($("eta"), "");
  // A fresh visit shows its rank at once (its estimate comes with the next read); one already matched needs its room first.
  if (joined.status === "WAITING") render({ ...joined, status: "WAITING", queueId });
  else await checkVisit();
  // The form is gone: take keyboard and screen-reader users to where their place is shown.
  if (!$("view-waiting").hidden) $("waiting-title").focus();
  renderNotifyState();
  // A line the form did not know yet (the first join of a fresh service creates it): learn its name.
  if (!picker.queue(queueId)) loadLines();
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

/** Join (or rejoin) the call; when the call server cannot be reached, tell HearO so it ends the match fairly. */
async function startCall() {
  const matchId = lastState?.matchId;
  for (const check of micChecks) check.stop(); // the call takes the microphone next
  room?.disconnect();
  room = null;
  joining = true;
  renderCallControls(lastState);
  $("call-status").dataset.state = "";
  let joined = null;
  try {
    joined = await joinCall({
      grant: () => api("POST", "/api/livekit/token", { headers: bearer(), body: matchId ? { matchId } : {} }),
      confirm: () => api("POST", `/api/matches/${matchId}/joined`, { headers: bearer() }),
      fail: async (reason) => {
        if (reason !== "permission_denied") failedLocally = reason; // that one is recorded only: the call goes on
        await api("POST", `/api/matches/${matchId}/call-failed`, { headers: bearer(), body: { reason } });
      },
      livekitUrl: config.livekitUrl,
      livekitScript: config.livekitScript,
      onStep: (step) => setText($("call-status"), strings[`call.${step}`]),
      onDisconnected: () => {
        if (room !== joined) return; // a room we left on purpose
        room = null;
        callDropped = true;
        renderCallControls(lastState);
        tick();
        $("reconnect-button").focus();
      },
      audioHost: $("waiting-app"),
    });
    // The match may have ended while we were connecting: then leave at once.
    if (lastState?.status === "MATCHED" || lastState?.status === "IN_CALL") {
      room = joined;
      callDropped = false;
    } else {
      joined.disconnect();
    }
  } catch (error) {
    const text =
      error instanceof CallUnreachable
        ? strings["call.unreachable"]
        : format(strings["call.failed"], { detail: error.detail ?? error.message });
    setText($("call-status"), text);
    $("call-status").dataset.state = "error";
    // The server ends the match and says so; read the state now in case that message is slow.
    if (error instanceof CallUnreachable) client?.resync();
  } finally {
    joining = false;
    if (lastState?.status === "MATCHED" || lastState?.status === "IN_CALL") renderCallControls(lastState);
    tick();
  }
}

/** The notification line beside the alerts: shown only once the browser said yes. */
function renderNotifyState() {
  const granted = "Notification" in window && Notification.permission === "granted";
  $("notify-state").hidden = !granted;
  if (granted) setText($("notify-state"), strings["notify.on"]);
  $("notify-why").hidden = !canAskNotifications();
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
  $("reconnect-button").addEventListener("click", startCall);
  window.addEventListener("pagehide", () => room?.disconnect());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && shownStatus === "MATCHED") document.title = `● ${BASE_TITLE}`;
  });
  // A permission answered later (the prompt, or the site settings) shows at the next look.
  document.addEventListener("visibilitychange", renderNotifyState);
  setInterval(tick, 1000);
}

const alerts = new Alerts({ soundToggle: $("sound-toggle"), baseTitle: BASE_TITLE });
const micChecks = [...document.querySelectorAll("[data-mic]")].map((root) => new MicCheck(root, strings));
// For support and the browser tests: show a state as if the server had sent it.
window.hearoPage = { render };

async function boot() {
  wire();
  renderChoiceHelp();
  renderNotifyState();
  loadLines();
  setInterval(() => $("view-join").hidden || loadLines(), LINES_REFRESH_MS);
  if (!visit.load()) {
    show("join");
    booted = true;
    return;
  }
  const known = await checkVisit();
  booted = true;
  if (!visit.load()) return; // the server forgot the token; the join form is showing
  if (!known) show("waiting"); // the network is down: the client will catch up
  if (!known || ACTIVE.has(lastState?.status)) startClient();
}

boot();
