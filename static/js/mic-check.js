/**
 * A microphone check: a level meter fed by getUserMedia through an
 * AnalyserNode, and plain words on what to do when the browser says no.
 * The test stops by itself after a while, and before the call starts,
 * so the microphone is never held longer than the customer expects.
 */

const TEST_MS = 20_000;
const HEARD = 0.04; // a level above this counts as "we can hear you"

export class MicCheck {
  constructor(root, strings) {
    this.root = root;
    this.strings = strings;
    this.button = root.querySelector("[data-mic-button]");
    this.row = root.querySelector("[data-mic-row]");
    this.meter = root.querySelector("[data-mic-level]");
    this.message = root.querySelector("[data-mic-message]");
    this.stream = null;
    this.context = null;
    this.button.addEventListener("click", () => (this.stream ? this.stop() : this.start()));
  }

  _say(key, state) {
    this.message.textContent = this.strings[key] ?? "";
    this.root.dataset.state = state;
  }

  async start() {
    if (!navigator.mediaDevices?.getUserMedia) {
      this._say("mic.unsupported", "unsupported");
      return;
    }
    this.button.disabled = true;
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (error) {
      const refused = error?.name === "NotAllowedError" || error?.name === "SecurityError";
      this._say(refused ? "mic.denied" : "mic.none", refused ? "denied" : "none");
      return;
    } finally {
      this.button.disabled = false;
    }
    this.heard = false;
    this.row.hidden = false;
    this.button.textContent = this.strings["mic.stop"];
    this._say("mic.listening", "listening");
    this._listen();
    this.timer = setTimeout(() => this.stop(), TEST_MS);
  }

  _listen() {
    try {
      const Context = window.AudioContext ?? window.webkitAudioContext;
      this.context = new Context();
      const analyser = this.context.createAnalyser();
      analyser.fftSize = 1024;
      this.context.createMediaStreamSource(this.stream).connect(analyser);
      const samples = new Float32Array(analyser.fftSize);
      const tick = () => {
        if (!this.stream) return;
        analyser.getFloatTimeDomainData(samples);
        let sum = 0;
        for (const sample of samples) sum += sample * sample;
        const level = Math.min(1, Math.sqrt(sum / samples.length) * 4);
        this.meter.value = level;
        if (level > HEARD && !this.heard) {
          this.heard = true;
          this._say("mic.ok", "ok");
        }
        this.frame = requestAnimationFrame(tick);
      };
      tick();
    } catch {
      this._say("mic.unsupported", "unsupported");
    }
  }

  /** Let go of the microphone (the call takes it next). */
  stop() {
    clearTimeout(this.timer);
    cancelAnimationFrame(this.frame);
    this.stream?.getTracks().forEach((track) => track.stop());
    this.stream = null;
    this.context?.close().catch(() => {});
    this.context = null;
    this.row.hidden = true;
    this.button.textContent = this.strings["mic.test"];
    if (this.root.dataset.state === "listening") this._say(this.heard ? "mic.ok" : "mic.silent", this.heard ? "ok" : "silent");
  }
}
