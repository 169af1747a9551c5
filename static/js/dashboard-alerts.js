/**
 * The dashboard's match alerts: a chime (once the page may play sound) and a
 * browser notification (once the counselor allowed them), once per match
 * even across reloads of the tab.
 */

import { format } from "./page.js";

const $ = (id) => document.getElementById(id);

const ALERTED_KEY = "hearo.alerted";
const alerted = new Set(JSON.parse(sessionStorage.getItem(ALERTED_KEY) ?? "[]"));
let audio = null;

export function unlockAudio() {
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

export function alertOnce(match, strings) {
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

export function renderAlertsState(strings) {
  const supported = "Notification" in window;
  const permission = supported ? Notification.permission : "denied";
  $("alerts-button").hidden = permission !== "default";
  $("alerts-status").textContent =
    permission === "granted" ? strings["notify.granted"] : permission === "denied" ? strings["notify.denied"] : "";
}

export async function enableAlerts(strings) {
  unlockAudio();
  if ("Notification" in window && Notification.permission === "default") {
    await Notification.requestPermission().catch(() => {});
  }
  renderAlertsState(strings);
}
