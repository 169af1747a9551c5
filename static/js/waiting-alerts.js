/**
 * Reaching a customer who looked away: a system notification, a short
 * chime, a flashing title and a vibration when a counselor is ready, and a
 * gentle "you're next" at ranks 2 and 1.
 *
 * Every piece is optional: an unsupported API or a refused permission just
 * leaves that piece out, silently. The notification permission is asked
 * once, at the moment of joining (a user gesture, with one line of why on
 * the form), and never again; the chime's AudioContext is also created at
 * that click, since browsers keep audio started without one muted.
 */

const SOUND_KEY = "hearo.sound";
const ASKED_KEY = "hearo.notifyAsked";
const FLASH_MS = 1000;

function stored(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function store(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    /* private mode: the choice lasts for this page only */
  }
}

/** Return whether the browser could still show the permission prompt (supported, not yet answered or asked). */
export function canAskNotifications() {
  return "Notification" in window && Notification.permission === "default" && stored(ASKED_KEY) !== "1";
}

export class Alerts {
  /**
   * @param {object} options
   * @param {HTMLInputElement} options.soundToggle  the visible "play a sound" checkbox
   * @param {string} options.baseTitle  the document's title when nothing calls for attention
   */
  constructor({ soundToggle, baseTitle }) {
    this.soundToggle = soundToggle;
    this.baseTitle = baseTitle;
    this.audio = null;
    this.flashTimer = null;
    soundToggle.checked = stored(SOUND_KEY) !== "off";
    soundToggle.addEventListener("change", () => store(SOUND_KEY, soundToggle.checked ? "on" : "off"));
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.stopFlashing();
    });
  }

  get soundOn() {
    return this.soundToggle.checked;
  }

  /** At the join click: unlock audio and ask for notifications once. Never throws, never waits. */
  prepare() {
    try {
      const Context = window.AudioContext ?? window.webkitAudioContext;
      if (Context && !this.audio) this.audio = new Context();
      this.audio?.resume?.().catch(() => {});
    } catch {
      this.audio = null;
    }
    if (!canAskNotifications()) return;
    store(ASKED_KEY, "1");
    try {
      const asked = Notification.requestPermission();
      asked?.catch?.(() => {});
    } catch {
      /* an old browser's callback form, or a blocked prompt: go without */
    }
  }

  /** A counselor is ready: everything, for someone who may not be looking. */
  matched({ title, body, flash }) {
    this.chime([660, 880, 990]);
    this.vibrate([200, 100, 200]);
    if (document.visibilityState === "hidden") {
      this.notify(title, body, "hearo-matched");
      this.flash(flash);
    }
  }

  /** A softer word: the rank reached 2 or 1. */
  nudge({ title, body }) {
    this.chime([660], 0.08);
    if (document.visibilityState === "hidden") this.notify(title, body, "hearo-next");
  }

  notify(title, body, tag) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    try {
      const note = new Notification(title, { body, tag, lang: document.documentElement.lang });
      note.onclick = () => {
        window.focus();
        note.close?.();
      };
    } catch {
      /* some platforms allow notifications only from a service worker */
    }
  }

  chime(notes, volume = 0.15) {
    if (!this.soundOn || !this.audio) return;
    try {
      const start = this.audio.currentTime + 0.02;
      notes.forEach((frequency, index) => {
        const oscillator = this.audio.createOscillator();
        const gain = this.audio.createGain();
        const at = start + index * 0.22;
        oscillator.type = "sine";
        oscillator.frequency.value = frequency;
        // A soft attack and decay: a bell, not a beep.
        gain.gain.setValueAtTime(0, at);
        gain.gain.linearRampToValueAtTime(volume, at + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.6);
        oscillator.connect(gain).connect(this.audio.destination);
        oscillator.start(at);
        oscillator.stop(at + 0.65);
      });
    } catch {
      /* no sound, then */
    }
  }

  vibrate(pattern) {
    try {
      navigator.vibrate?.(pattern);
    } catch {
      /* not here */
    }
  }

  /** Alternate the tab's title until the customer looks (or the match is over). */
  flash(text) {
    this.stopFlashing();
    let on = false;
    this.flashTimer = setInterval(() => {
      on = !on;
      document.title = on ? text : this.baseTitle;
    }, FLASH_MS);
    document.title = text;
  }

  stopFlashing() {
    if (!this.flashTimer) return false;
    clearInterval(this.flashTimer);
    this.flashTimer = null;
    return true;
  }

  get flashing() {
    return this.flashTimer !== null;
  }
}
