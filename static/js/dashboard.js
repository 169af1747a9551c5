/**
 * The counselor dashboard: status, the live queue, the match alert, the call,
 * today's history. The counselor topic's snapshot is only the queue summary,
 * so the dashboard re-reads its whole state (GET stateUrl) after every
 * (re)connect; on the polling tier that read is the poll.
 *
 * The hand-off never traps the counselor: an open match can always be
 * released, a call server that cannot be reached is reported (the match then
 * ends as call_failed), and every ending is told in plain words.
 */

import { HearoClient } from "./hearo-client.js";
import { api, ApiError, format, pageData, showTier } from "./page.js";
import { CallUnreachable, joinCall } from "./call.js";
import { alertOnce, enableAlerts, renderAlertsState, unlockAudio } from "./dashboard-alerts.js";
import { QueuePanel } from "./dashboard-queue.js";
import { withFallbacks } from "./dashboard-text.js";

const page = pageData();
const config = page.config;
const strings = withFallbacks(page.strings, document.documentElement.lang);
const $ = (id) => document.getElementById(id);
const CSRF = { "X-CSRFToken": config.csrfToken };
const ON_SHIFT = new Set(["AVAILABLE", "AWAY", "BUSY", "WRAP_UP"]); // each needs the heartbeat
const LOGIN_URL = `/accounts/login/?next=${encodeURIComponent(window.location.pathname)}`;
const joinLabel = $("join-call-button").textContent;

let status = $("current-status").dataset.status;
let openMatch = null;
const queuePanel = new QueuePanel({ config, strings });
let wrapUp = null; // { endsAt: performance.now() deadline } while WRAP_UP
let room = null;
let client = null;
let attempt = null; // the current join attempt: { matchId, failure } (a dropped room of an older one is ignored)
let joinBy = null; // { deadline: epoch ms, endsAt: performance.now() deadline } while the sides may join
let interrupted = null; // { side, endsAt } while a side's connection to the call is down
let ended = null; // { reason, by, failure } of the match that just ended, while its notice shows
let view = null; // what the match panel shows: idle, ended, assigned, joined, in-call, interrupted

// --- Rendering ------------------------------------------------------------------------

function showError(message) {
  $("error").textContent = message ?? "";
  $("error").hidden = !message;
}

function errorText(error) {
  if (error instanceof ApiError && error.status === 0) return strings["error.network"];
  return format(strings["error.generic"], { detail: error.detail ?? error.message ?? String(error) });
}

let said = []; // what the live region will say next (changes a moment apart are said together)

/** Say something in the polite live region (cleared first, so the same words are said again). */
function announce(text) {
  if (!text?.trim()) return;
  said.push(text.trim());
  if (said.length > 1) return;
  $("announce").textContent = "";
  setTimeout(() => {
    $("announce").textContent = said.join(" ");
    said = [];
  }, 50);
}

/** Return a performance.now() deadline from an epoch-ms one, by what was left on the server's clock. */
function deadlineFrom(epochMs, sentAt) {
  // The two clocks may disagree by minutes: count down what was left, not to the server's instant.
  return performance.now() + Math.max(0, epochMs - (sentAt ?? Date.now()));
}

function secondsLeft(endsAt) {
  return Math.max(0, Math.ceil((endsAt - performance.now()) / 1000));
}

/** Show the status; ``wrapUpUntil`` and ``sentAt`` (epoch ms, the server's clock) time a wrap-up. */
function renderStatus(next, wrapUpUntil = null, sentAt = null) {
  status = next;
  const current = $("current-status");
  current.textContent = strings[`status.${next}`] ?? next;
  current.dataset.status = next;
  $("status-buttons").dataset.status = next;
  for (const button of document.querySelectorAll("#status-buttons .segment")) {
    button.setAttribute("aria-pressed", String(button.dataset.status === next));
    // The matcher owns BUSY, but the buttons stay focusable and say what to do
    // (release or complete) rather than going dead while a call cannot start.
    button.setAttribute("aria-disabled", String(next === "BUSY"));
  }
  $("status-busy").hidden = next !== "BUSY";
  wrapUp = next === "WRAP_UP" && wrapUpUntil ? { endsAt: deadlineFrom(wrapUpUntil, sentAt) } : null;
  $("wrap-up").hidden = wrapUp === null;
  tickWrapUp();
  renderEnded();
}

function tickWrapUp() {
  if (wrapUp === null) return;
  const seconds = secondsLeft(wrapUp.endsAt);
  $("wrap-up-countdown").textContent =
    seconds > 0 ? format(strings["wrapup.left"], { time: durationText(seconds) }) : strings["wrapup.over"];
}

/** Follow the connection: the queue's figures are live only while a tier is healthy. */
function onTier(tier, transport, healthy) {
  showTier($("tier"), strings, config, tier, transport, healthy);
  if (queuePanel.connection(Boolean(tier) && healthy !== false)) announce(strings["queue.live_again"]);
}

/** Show the open match (or none); a view change is announced and takes the focus. */
function renderMatch(match) {
  if (match?.matchId !== openMatch?.matchId) {
    interrupted = null;
    joinBy = null;
    closeRelease(false);
  }
  if (match !== null) ended = null; // a new customer replaces the last ending's notice
  openMatch = match;
  if (match?.joinDeadline && match.joinDeadline !== joinBy?.deadline) {
    joinBy = { deadline: match.joinDeadline, endsAt: deadlineFrom(match.joinDeadline, match.sentAt) };
  }
  $("match-idle").hidden = match !== null || ended !== null;
  $("match-ended").hidden = match !== null || ended === null;
  $("match-details").hidden = match === null;
  const next = matchView(match);
  $("match-panel").dataset.state = next;
  if (match !== null) renderMatchDetails(match, next);
  else renderEnded();
  tickMatch();
  setView(next);
}

function matchView(match) {
  if (match === null) return ended ? "ended" : "idle";
  if (interrupted) return "interrupted";
  if (match.customerJoined && match.counselorJoined) return "in-call";
  return match.counselorJoined ? "joined" : "assigned";
}

function renderMatchDetails(match, current) {
  const name = match.customerName || strings.anonymous;
  $("match-alert-title").textContent = viewTitle(current, name);
  $("match-alert-body").textContent = format(strings["alert.body"], { name, room: match.roomName });
  $("match-alert-body").hidden = current !== "assigned"; // "is waiting" is over once anyone joined
  $("match-customer").textContent = name;
  $("match-room").textContent = match.roomName;
  const join = $("join-call-button");
  join.hidden = room !== null && interrupted?.side !== "counselor";
  join.textContent = attempt?.failure ? strings["call.retry"] : match.counselorJoined ? strings["call.rejoin"] : joinLabel;
  join.classList.toggle("primary", current !== "in-call"); // in a call, completing it is the main action
  $("complete-button").hidden = !(match.customerJoined && match.counselorJoined);
  if (!$("call-status").dataset.state) {
    $("call-status").textContent = current === "in-call" ? strings["alert.started"] : strings["alert.waiting_join"];
  }
}

function viewTitle(current, name) {
  if (current === "in-call") return format(strings["view.in_call"], { name });
  if (current === "joined") return format(strings["view.joined"], { name });
  if (current === "interrupted") return strings["view.interrupted"];
  return `${strings["alert.title"]}: ${name}`;
}

/** Move the focus to the new view's heading and say what changed (not on the page's first render). */
function setView(next) {
  if (next === view) return;
  const first = view === null;
  view = next;
  if (first || next === "idle") return;
  const heading = next === "ended" ? $("match-ended-title") : $("match-alert-title");
  announce(next === "ended" ? `${$("match-ended-text").textContent} ${$("match-ended-status").textContent}` : heading.textContent);
  // Never pull the focus out of the release form while the counselor fills it in.
  if (!$("release-form").contains(document.activeElement)) heading.focus();
}

/** Count down the time left to join, and an interrupted call's time to reconnect. */
function tickMatch() {
  const countdown = $("join-countdown");
  const waiting = joinBy !== null && (view === "assigned" || view === "joined");
  countdown.hidden = !waiting;
  if (waiting) {
    const seconds = secondsLeft(joinBy.endsAt);
    const key = view === "joined" ? "join.left_customer" : "join.left";
    countdown.textContent = seconds > 0 ? format(strings[key], { time: durationText(seconds) }) : strings["join.over"];
    countdown.dataset.urgent = String(seconds <= 15);
  }
  $("match-interrupted").hidden = interrupted === null || openMatch === null;
  if (interrupted && openMatch) {
    const name = openMatch.customerName || strings.anonymous;
    $("match-interrupted-text").textContent = format(strings[`interrupted.${interrupted.side}`], { name });
    const left = durationText(secondsLeft(interrupted.endsAt));
    $("match-interrupted-countdown").textContent = format(strings["interrupted.left"], { time: left });
  }
}

/** Say how the last match ended, and where that leaves the counselor (kept current as STATUS arrives). */
function renderEnded() {
  if (ended === null) return;
  $("match-ended-text").textContent = endedText(ended);
  const where = strings[`ended.you.${status}`] ?? "";
  // The STATUS push may follow the ending: say where the counselor now is when it does.
  if (view === "ended" && where && where !== $("match-ended-status").textContent) announce(where);
  $("match-ended-status").textContent = where;
}

function endedText({ reason, by, failure }) {
  if (reason === "call_failed") {
    const unreachable = !failure || failure === "unreachable" || failure === "timeout";
    return strings[unreachable ? "ended.call_failed.unreachable" : "ended.call_failed"];
  }
  if (reason === "call_dropped") return strings[`ended.call_dropped.${by === "counselor" ? "counselor" : "customer"}`];
  if (strings[`ended.${reason}`]) return strings[`ended.${reason}`];
  return reason ? format(strings["alert.ended"], { reason: strings[`reason.${reason}`] ?? reason }) : "";
}

function durationText(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
}

const clock = new Intl.DateTimeFormat(document.documentElement.lang, { hour: "2-digit", minute: "2-digit" });

function renderHistory(rows) {
  const body = $("history-body");
  body.replaceChildren();
  if (!rows.length) {
    const row = body.insertRow();
    const cell = row.insertCell();
    cell.colSpan = 5;
    cell.className = "empty";
    cell.textContent = strings["history.empty"];
    return;
  }
  for (const match of rows) {
    const row = body.insertRow();
    row.dataset.matchId = match.matchId;
    const cells = [
      clock.format(new Date(match.createdAt)),
      match.customerName || strings.anonymous,
      match.roomName,
      durationText(match.durationSeconds),
      strings[`reason.${match.endReason || "open"}`] ?? match.endReason,
    ];
    for (const text of cells) row.insertCell().textContent = text;
  }
}

function applyDashboard(state) {
  queuePanel.renderProfile(state.counselor);
  renderStatus(state.counselor.status, state.counselor.wrapUpUntil, state.timestamp);
  queuePanel.render(state.queue);
  const next = state.openMatch ? { ...state.openMatch, sentAt: state.timestamp } : null;
  // The match we show ended while we did not hear it (a lost push, the polling tier): say how.
  const gone = openMatch && next?.matchId !== openMatch.matchId && endReasonOf(openMatch.matchId, state.history);
  if (gone) endCall(gone, {});
  if (next && "interrupted" in next && next.interrupted?.side !== interrupted?.side) {
    // The state names the interruption (or none) when the server's summary carries it.
    const cut = next.interrupted;
    interrupted = cut ? { side: cut.side, endsAt: deadlineFrom(cut.reconnectUntil, state.timestamp) } : null;
  }
  renderMatch(next);
  if (state.openMatch && !state.openMatch.counselorJoined) alertOnce(state.openMatch, strings);
  renderHistory(state.history);
  $("dashboard-app").setAttribute("aria-busy", "false");
}

function endReasonOf(matchId, history) {
  return history?.find((row) => row.matchId === matchId)?.endReason ?? null;
}

// --- Messages from the realtime client ---------------------------------------------

function onMessage(body) {
  switch (body.type) {
    case "DASHBOARD":
      applyDashboard(body);
      break;
    case "QUEUE":
      queuePanel.render(body);
      break;
    case "STATUS":
      renderStatus(body.status, body.wrapUpUntil, body.timestamp);
      break;
    case "MATCH_ASSIGNED": {
      const match = {
        matchId: body.matchId,
        roomName: body.roomName,
        customerName: body.customerName,
        customerJoined: false,
        counselorJoined: false,
        joinDeadline: body.joinDeadline,
        sentAt: body.timestamp,
      };
      renderMatch(match);
      alertOnce(match, strings);
      client?.resync(); // today's history gains the open session
      break;
    }
    case "SKILLS":
      client?.resync(); // staff changed our queues or languages: re-read the profile and the lines
      break;
    case "MATCH_STARTED":
      if (openMatch?.matchId === body.matchId) {
        $("call-status").dataset.state = "";
        renderMatch({ ...openMatch, customerJoined: true, counselorJoined: true });
      }
      break;
    case "MATCH_INTERRUPTED":
      if (openMatch?.matchId === body.matchId) {
        interrupted = { side: body.side, endsAt: deadlineFrom(body.reconnectUntil, body.timestamp) };
        renderMatch(openMatch);
      }
      break;
    case "MATCH_RESUMED":
      if (openMatch?.matchId === body.matchId && interrupted) {
        interrupted = null;
        renderMatch(openMatch);
        announce(strings["call.resumed"]);
      }
      break;
    case "MATCH_ENDED":
      if (openMatch?.matchId === body.matchId) endCall(body.reason, body);
      break;
    default:
      break;
  }
}

/** The match ended (``by`` and ``failure`` as MATCH_ENDED gives them): leave the call and say why. */
function endCall(reason, { by, failure } = {}) {
  const failed = attempt?.failure;
  leaveRoom();
  attempt = null;
  $("call-status").dataset.state = "";
  $("call-status").textContent = "";
  closeRelease(false);
  ended = { reason, by, failure: failure ?? failed };
  renderMatch(null);
  client?.resync(); // the history gained a row
}

function leaveRoom() {
  const current = room;
  room = null; // first: the room's own "disconnected" is then ours, not a drop
  current?.disconnect();
}

// --- Actions -------------------------------------------------------------------------

async function setStatus(next) {
  unlockAudio();
  if (status === "BUSY") {
    // The server would refuse (counselor_busy): point at the way out instead.
    announce(strings["status.busy_hint"]);
    if (!$("release-button").hidden && !$("match-details").hidden) $("release-button").focus();
    return;
  }
  const profile = await api("POST", "/api/counselor/status", { headers: CSRF, body: { status: next } });
  renderStatus(profile.status, profile.wrapUpUntil);
}

async function heartbeat() {
  if (!ON_SHIFT.has(status)) return;
  try {
    await api("POST", "/api/counselor/heartbeat", { headers: CSRF });
  } catch (error) {
    if (error instanceof ApiError && error.status === 409) client?.resync(); // we were set OFFLINE
    else if (error instanceof ApiError && error.fatal) window.location.assign(LOGIN_URL);
  }
}

function showCallStatus(state, text) {
  $("call-status").dataset.state = state;
  $("call-status").textContent = text;
}

async function startCall() {
  const button = $("join-call-button");
  const matchId = openMatch?.matchId;
  if (!matchId) return;
  leaveRoom(); // a rejoin after a drop starts from a clean room
  const current = { matchId, failure: null };
  attempt = current;
  button.disabled = true;
  try {
    room = await joinCall({
      grant: () => api("POST", "/api/livekit/token", { headers: CSRF, body: { matchId } }),
      confirm: () => api("POST", `/api/matches/${matchId}/joined`, { headers: CSRF }),
      fail: (reason) => reportFailure(current, reason),
      livekitUrl: config.livekitUrl,
      livekitScript: config.livekitScript,
      onStep: (step) => showCallStatus(step, strings[`call.${step}`]),
      onDisconnected: () => callDropped(current),
      audioHost: $("match-panel"),
    });
    if (attempt !== current) return; // the match ended meanwhile; endCall left the room
    if (openMatch?.matchId === matchId) renderMatch({ ...openMatch, counselorJoined: true });
  } catch (error) {
    if (attempt !== current || openMatch?.matchId !== matchId) return; // ended meanwhile: its notice says why
    if (error instanceof CallUnreachable) {
      // Reported: the MATCH_ENDED (call_failed) follows; if the report failed, the counselor decides.
      showCallStatus("error", current.reported ? strings["call.reporting"] : strings["call.unreachable_open"]);
      if (current.reported) client?.resync();
    } else {
      current.failure = "other";
      showCallStatus("error", format(strings["call.failed"], { detail: error.detail ?? error.message }));
    }
    renderMatch(openMatch);
  } finally {
    button.disabled = false;
  }
}

/** Tell HearO this side tried to join and could not (POST call-failed); remember whether it heard. */
async function reportFailure(current, reason) {
  current.failure = reason;
  showCallStatus("error", strings["call.reporting"]);
  try {
    await api("POST", `/api/matches/${current.matchId}/call-failed`, { headers: CSRF, body: { reason } });
    current.reported = true;
  } catch (error) {
    // 409 match_ended: it ended for another reason meanwhile; the re-read tells which.
    if (error instanceof ApiError && error.status === 409) {
      current.reported = true;
      client?.resync();
    }
  }
}

/** The call's room dropped after joining: offer to rejoin (the server may also say MATCH_INTERRUPTED). */
function callDropped(current) {
  if (attempt !== current || room === null) return; // our own leave, or an older attempt's room
  room = null;
  showCallStatus("error", strings["call.dropped"]);
  if (openMatch) renderMatch(openMatch);
  $("join-call-button").focus();
}

async function complete() {
  const matchId = openMatch?.matchId;
  if (!matchId) return;
  await api("POST", `/api/matches/${matchId}/complete`, { headers: CSRF });
  endCall("completed");
}

// --- Releasing the customer --------------------------------------------------------------

function openRelease() {
  $("release-form").hidden = false;
  $("release-button").setAttribute("aria-expanded", "true");
  $("release-form").querySelector("input").focus();
}

function closeRelease(refocus = true) {
  $("release-form").reset();
  $("release-form").hidden = true;
  $("release-button").setAttribute("aria-expanded", "false");
  if (refocus) $("release-button").focus();
}

function releaseReason() {
  const choice = $("release-form").querySelector("input[name=release-reason]:checked")?.value;
  const note = $("release-note").value.trim();
  return [choice, note].filter(Boolean).join(": ").slice(0, 200);
}

async function release() {
  const matchId = openMatch?.matchId;
  if (!matchId) return;
  const reason = releaseReason();
  await api("POST", `/api/matches/${matchId}/release`, { headers: CSRF, body: reason ? { reason } : {} });
  if (openMatch?.matchId === matchId) endCall("released", { by: "counselor" });
}

function guarded(button, action) {
  return async (event) => {
    event?.preventDefault();
    showError(null);
    button.disabled = true;
    try {
      await action();
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) window.location.assign(LOGIN_URL);
      showError(errorText(error));
    } finally {
      button.disabled = false;
    }
  };
}

// --- Boot --------------------------------------------------------------------------------

function wire() {
  for (const button of document.querySelectorAll("#status-buttons .segment")) {
    button.addEventListener("click", guarded(button, () => setStatus(button.dataset.status)));
  }
  $("wrap-up-ready").addEventListener("click", guarded($("wrap-up-ready"), () => setStatus("AVAILABLE")));
  $("alerts-button").addEventListener("click", () => enableAlerts(strings));
  $("join-call-button").addEventListener("click", startCall);
  $("complete-button").addEventListener("click", guarded($("complete-button"), complete));
  $("release-button").addEventListener("click", () => ($("release-form").hidden ? openRelease() : closeRelease()));
  $("release-cancel").addEventListener("click", () => closeRelease());
  $("release-form").addEventListener("submit", guarded($("release-confirm"), release));
  document.addEventListener("pointerdown", unlockAudio, { once: true });
  document.addEventListener("keydown", unlockAudio, { once: true });
  window.addEventListener("pagehide", () => room?.disconnect());
  setInterval(tick, 1000);
}

function tick() {
  queuePanel.tick();
  tickWrapUp();
  tickMatch();
}

/** Put the texts the template cannot translate yet (data-text keys) in the page's language. */
function localize() {
  for (const element of document.querySelectorAll("[data-text]")) {
    element.textContent = strings[element.dataset.text] ?? element.textContent;
  }
}

function boot() {
  localize();
  wire();
  renderStatus(status);
  renderAlertsState(strings);
  client = new HearoClient({
    config,
    destination: `/topic/counselor/${config.counselorId}`,
    rawAuth: { type: "auth" }, // the session cookie authenticates the socket
    poll: () => api("GET", config.stateUrl),
    heartbeat,
    onMessage,
    onTier,
    // The topic's snapshot is only the queue: re-read the rest after every (re)connect.
    onConnect: (tier) => tier !== "poll" && client.resync(),
    onRefused: async () => {
      try {
        await api("GET", config.stateUrl);
      } catch (error) {
        if (error instanceof ApiError && error.fatal) window.location.assign(LOGIN_URL);
      }
    },
  });
  window.hearoClient = client; // for support and the browser tests
  client.start();
}

boot();
