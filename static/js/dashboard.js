/**
 * The counselor dashboard: status, the live queue, the match alert, the call,
 * today's history. The counselor topic's snapshot is only the queue summary,
 * so the dashboard re-reads its whole state (GET stateUrl) after every
 * (re)connect; on the polling tier that read is the poll.
 */

import { HearoClient } from "./hearo-client.js";
import { api, ApiError, format, pageData, showTier } from "./page.js";
import { CallUnreachable, joinCall } from "./call.js";

const { config, strings } = pageData();
const $ = (id) => document.getElementById(id);
const CSRF = { "X-CSRFToken": config.csrfToken };
const ON_SHIFT = new Set(["AVAILABLE", "AWAY", "BUSY", "WRAP_UP"]); // each needs the heartbeat
const LOGIN_URL = `/accounts/login/?next=${encodeURIComponent(window.location.pathname)}`;

let status = $("current-status").dataset.status;
let openMatch = null;
let queue = { waiting: null, longestWaitSeconds: null, queues: [], version: -1, at: 0 };
let myQueues = null; // the queue ids this counselor serves (null until the first profile)
let wrapUp = null; // { endsAt: performance.now() deadline } while WRAP_UP
let room = null;
let client = null;

// --- Rendering ------------------------------------------------------------------------

function showError(message) {
  $("error").textContent = message ?? "";
  $("error").hidden = !message;
}

function errorText(error) {
  if (error instanceof ApiError && error.status === 0) return strings["error.network"];
  return format(strings["error.generic"], { detail: error.detail ?? error.message ?? String(error) });
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
    button.disabled = next === "BUSY"; // the matcher owns BUSY; complete the session first
  }
  // Count the wrap-up down from what is left by the server's clock, not from
  // the deadline itself: the two clocks may disagree by minutes.
  const left = next === "WRAP_UP" && wrapUpUntil ? Math.max(0, wrapUpUntil - (sentAt ?? Date.now())) : null;
  wrapUp = left === null ? null : { endsAt: performance.now() + left };
  $("wrap-up").hidden = wrapUp === null;
  tickWrapUp();
}

function tickWrapUp() {
  if (wrapUp === null) return;
  const seconds = Math.max(0, Math.ceil((wrapUp.endsAt - performance.now()) / 1000));
  $("wrap-up-countdown").textContent =
    seconds > 0 ? format(strings["wrapup.left"], { time: durationText(seconds) }) : strings["wrapup.over"];
}

/** The counselor's queues in the service's order (the order of config.queueNames), unknown ones last. */
function ordered(queueIds) {
  const order = Object.keys(config.queueNames ?? {});
  const rank = (id) => (order.includes(id) ? order.indexOf(id) : order.length);
  return [...queueIds].sort((a, b) => rank(a) - rank(b));
}

function renderProfile(counselor) {
  myQueues = counselor.queues ? ordered(counselor.queues) : null;
  const names = (myQueues ?? []).map((id) => config.queueNames?.[id] ?? id);
  const languages = (counselor.languages ?? []).map((code) => config.languageNames?.[code] ?? code);
  $("skills-line").textContent = names.length
    ? format(strings["skills.line"], { queues: names.join(", "), languages: languages.join(", ") || "—" })
    : strings["skills.none"];
}

function renderQueue(body) {
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
  queue = {
    waiting: own ? mine.reduce((sum, line) => sum + line.waiting, 0) : body.waiting,
    longestWaitSeconds: own ? (heads.length ? Math.max(...heads) : null) : body.longestWaitSeconds,
    queues: mine,
    version: body.version ?? queue.version,
    at: performance.now(),
  };
  $("queue-waiting").textContent = String(queue.waiting);
  renderLines();
  tickQueue();
}

/** One row per queue the counselor serves, when there is more than one to tell apart. */
function renderLines() {
  const table = $("queue-lines");
  table.hidden = queue.queues.length < 2;
  const body = $("queue-lines-body");
  body.replaceChildren();
  for (const line of queue.queues) {
    const row = body.insertRow();
    row.dataset.queueId = line.queueId;
    row.dataset.waiting = String(line.waiting);
    row.insertCell().textContent = config.queueNames?.[line.queueId] ?? line.queueId;
    row.insertCell().textContent = String(line.waiting);
    row.insertCell().className = "longest";
  }
}

function longestLine() {
  const waited = queue.queues.filter((line) => line.longestWaitSeconds !== null && line.longestWaitSeconds !== undefined);
  return waited.length < 2 ? null : waited.reduce((a, b) => (b.longestWaitSeconds > a.longestWaitSeconds ? b : a));
}

function waitText(seconds) {
  if (seconds === null || seconds === undefined) return strings["queue.none"];
  if (seconds < 60) return format(strings["queue.seconds"], { seconds });
  return format(strings["queue.minutes"], { minutes: Math.floor(seconds / 60), seconds: seconds % 60 });
}

/** Let the longest wait run on between updates (it grows by itself). */
function tickQueue() {
  const grown = Math.floor((performance.now() - queue.at) / 1000);
  const longest = (base) => (base === null || base === undefined ? null : base + grown);
  $("queue-longest").textContent = waitText(longest(queue.longestWaitSeconds));
  queue.queues.forEach((line, index) => {
    const row = $("queue-lines-body").rows[index];
    const cell = row?.querySelector(".longest");
    if (cell) cell.textContent = waitText(longest(line.longestWaitSeconds));
    // Point at the line whose first customer has waited longest (ties: the first such line).
    row?.classList.toggle("is-longest", line === longestLine());
  });
  tickWrapUp();
}

function renderMatch(match) {
  openMatch = match;
  const panel = $("match-panel");
  $("match-idle").hidden = match !== null;
  $("match-details").hidden = match === null;
  if (match === null) {
    panel.dataset.state = "idle";
    return;
  }
  const inCall = match.customerJoined && match.counselorJoined;
  panel.dataset.state = inCall ? "in-call" : "assigned";
  const name = match.customerName || strings.anonymous;
  $("match-alert-title").textContent = strings["alert.title"];
  $("match-alert-body").textContent = format(strings["alert.body"], { name, room: match.roomName });
  $("match-customer").textContent = name;
  $("match-room").textContent = match.roomName;
  $("join-call-button").hidden = room !== null;
  $("complete-button").disabled = !inCall;
  if (!$("call-status").dataset.state) {
    $("call-status").textContent = inCall ? strings["alert.started"] : strings["alert.waiting_join"];
  }
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
  renderProfile(state.counselor);
  renderStatus(state.counselor.status, state.counselor.wrapUpUntil, state.timestamp);
  renderQueue(state.queue);
  renderMatch(state.openMatch);
  if (state.openMatch && !state.openMatch.counselorJoined) alertOnce(state.openMatch);
  renderHistory(state.history);
  $("dashboard-app").setAttribute("aria-busy", "false");
}

// --- Alerts: sound and a browser notification ------------------------------------

const ALERTED_KEY = "hearo.alerted";
const alerted = new Set(JSON.parse(sessionStorage.getItem(ALERTED_KEY) ?? "[]"));
let audio = null;

function unlockAudio() {
  // Browsers only let a page play sound after a user gesture: make the context then.
  audio ??= new AudioContext();
  if (audio.state === "suspended") audio.resume().catch(() => {});
}

function chime() {
  if (!audio) return;
  const now = audio.currentTime;
  for (const [offset, frequency] of [[0, 660], [0.18, 880]]) {
    const tone = audio.createOscillator();
    const gain = audio.createGain();
    tone.frequency.value = frequency;
    gain.gain.setValueAtTime(0.0001, now + offset);
    gain.gain.exponentialRampToValueAtTime(0.2, now + offset + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, now + offset + 0.35);
    tone.connect(gain).connect(audio.destination);
    tone.start(now + offset);
    tone.stop(now + offset + 0.4);
  }
}

function alertOnce(match) {
  if (alerted.has(match.matchId)) return;
  alerted.add(match.matchId);
  sessionStorage.setItem(ALERTED_KEY, JSON.stringify([...alerted].slice(-20)));
  chime();
  $("match-panel").dataset.alert = "new";
  if ("Notification" in window && Notification.permission === "granted") {
    const body = format(strings["alert.body"], { name: match.customerName || strings.anonymous, room: match.roomName });
    const note = new Notification(strings["alert.title"], { body, tag: `hearo-match-${match.matchId}` });
    note.onclick = () => window.focus();
  }
}

function renderAlertsState() {
  const supported = "Notification" in window;
  const permission = supported ? Notification.permission : "denied";
  $("alerts-button").hidden = permission !== "default";
  $("alerts-status").textContent =
    permission === "granted" ? strings["notify.granted"] : permission === "denied" ? strings["notify.denied"] : "";
}

async function enableAlerts() {
  unlockAudio();
  if ("Notification" in window && Notification.permission === "default") {
    await Notification.requestPermission().catch(() => {});
  }
  renderAlertsState();
}

// --- Messages from the realtime client ---------------------------------------------

function onMessage(body) {
  switch (body.type) {
    case "DASHBOARD":
      applyDashboard(body);
      break;
    case "QUEUE":
      renderQueue(body);
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
      };
      renderMatch(match);
      alertOnce(match);
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
    case "MATCH_ENDED":
      if (openMatch?.matchId === body.matchId) endCall(body.reason);
      break;
    default:
      break;
  }
}

function endCall(reason) {
  room?.disconnect();
  room = null;
  $("call-status").dataset.state = "";
  $("call-status").textContent = "";
  renderMatch(null);
  if (reason) $("match-idle").textContent = format(strings["alert.ended"], { reason: strings[`reason.${reason}`] ?? reason });
  client?.resync(); // the history gained a row
}

// --- Actions -------------------------------------------------------------------------

async function setStatus(next) {
  unlockAudio();
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

async function startCall() {
  const button = $("join-call-button");
  const matchId = openMatch?.matchId;
  button.disabled = true;
  try {
    room = await joinCall({
      grant: () => api("POST", "/api/livekit/token", { headers: CSRF, body: { matchId } }),
      confirm: () => api("POST", `/api/matches/${matchId}/joined`, { headers: CSRF }),
      livekitUrl: config.livekitUrl,
      livekitScript: config.livekitScript,
      onStep: (step) => {
        $("call-status").dataset.state = step;
        $("call-status").textContent = strings[`call.${step}`];
      },
      audioHost: $("match-panel"),
    });
    button.hidden = true;
  } catch (error) {
    $("call-status").dataset.state = "error";
    $("call-status").textContent =
      error instanceof CallUnreachable
        ? strings["call.unreachable"]
        : format(strings["call.failed"], { detail: error.detail ?? error.message });
  } finally {
    button.disabled = false;
  }
}

async function complete() {
  const matchId = openMatch?.matchId;
  if (!matchId) return;
  await api("POST", `/api/matches/${matchId}/complete`, { headers: CSRF });
  endCall("completed");
}

function guarded(button, action) {
  return async () => {
    showError(null);
    button.disabled = true;
    try {
      await action();
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) window.location.assign(LOGIN_URL);
      showError(errorText(error));
    } finally {
      button.disabled = status === "BUSY" && button.classList.contains("segment");
    }
  };
}

// --- Boot --------------------------------------------------------------------------------

function wire() {
  for (const button of document.querySelectorAll("#status-buttons .segment")) {
    button.addEventListener("click", guarded(button, () => setStatus(button.dataset.status)));
  }
  $("wrap-up-ready").addEventListener("click", guarded($("wrap-up-ready"), () => setStatus("AVAILABLE")));
  $("alerts-button").addEventListener("click", enableAlerts);
  $("join-call-button").addEventListener("click", startCall);
  $("complete-button").addEventListener("click", guarded($("complete-button"), complete));
  document.addEventListener("pointerdown", unlockAudio, { once: true });
  document.addEventListener("keydown", unlockAudio, { once: true });
  window.addEventListener("pagehide", () => room?.disconnect());
  setInterval(tickQueue, 1000);
}

function boot() {
  wire();
  renderStatus(status);
  renderAlertsState();
  client = new HearoClient({
    config,
    destination: `/topic/counselor/${config.counselorId}`,
    rawAuth: { type: "auth" }, // the session cookie authenticates the socket
    poll: () => api("GET", config.stateUrl),
    heartbeat,
    onMessage,
    onTier: (tier, transport, healthy) => showTier($("tier"), strings, config, tier, transport, healthy),
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
