/**
 * The voice call: fetch a LiveKit token from HearO, join the room with
 * livekit-client, then confirm the join to HearO. livekit-client is large, so
 * its UMD bundle (served from node_modules) loads only when a call starts.
 */

const CONNECT_TIMEOUT_MS = 10000;

/** The call server could not be reached; ``reason`` is what HearO is told: "unreachable" or "timeout". */
export class CallUnreachable extends Error {
  constructor(message, reason = "unreachable") {
    super(message);
    this.reason = reason;
  }
}

let loading = null;

function loadLivekit(src) {
  if (window.LivekitClient) return Promise.resolve(window.LivekitClient);
  loading ??= new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = src;
    script.onload = () => resolve(window.LivekitClient);
    script.onerror = () => {
      loading = null;
      reject(new CallUnreachable("livekit-client did not load"));
    };
    document.head.append(script);
  });
  return loading;
}

function withTimeout(promise, ms) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new CallUnreachable("timeout", "timeout")), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Join the caller's call; resolve with the connected Room.
 *
 * When the call server cannot be reached, ``fail`` tells HearO so (POST
 * /api/matches/{id}/call-failed) before the CallUnreachable is thrown, so the
 * match ends as call_failed instead of waiting for a no-show nobody caused.
 *
 * @param {object} options
 * @param {() => Promise<{url, token, roomName, identity}>} options.grant  POST /api/livekit/token
 * @param {() => Promise<void>} options.confirm  POST /api/matches/{id}/joined
 * @param {(reason: string) => Promise<void>} [options.fail]  POST /api/matches/{id}/call-failed
 * @param {string} options.livekitUrl    the configured server, when the grant names none
 * @param {string} options.livekitScript the UMD bundle's URL
 * @param {(step: string) => void} options.onStep  "fetching", "connecting", "joined"
 * @param {() => void} [options.onDisconnected]  the room dropped after joining (network, server)
 * @param {HTMLElement} options.audioHost where remote audio elements go
 */
export async function joinCall({ grant, confirm, fail, livekitUrl, livekitScript, onStep, onDisconnected, audioHost }) {
  onStep("fetching");
  const access = await grant();
  onStep("connecting");
  let room;
  try {
    const LK = await loadLivekit(livekitScript);
    room = new LK.Room({ adaptiveStream: true, dynacast: true });
    room.on(LK.RoomEvent.TrackSubscribed, (track) => {
      if (track.kind === "audio") audioHost.append(track.attach());
    });
    room.on(LK.RoomEvent.TrackUnsubscribed, (track) => track.detach().forEach((el) => el.remove()));
    await withTimeout(room.connect(access.url || livekitUrl, access.token), CONNECT_TIMEOUT_MS);
  } catch (error) {
    if (room) Promise.resolve(room.disconnect()).catch(() => {});
    const unreachable =
      error instanceof CallUnreachable ? error : new CallUnreachable(String(error?.message ?? error));
    // Tell HearO before giving up; if that fails too, the join deadline still ends the match.
    // (A fail that throws, or returns no promise, must not hide the CallUnreachable.)
    if (fail) await Promise.resolve().then(() => fail(unreachable.reason)).catch(() => {});
    throw unreachable;
  }
  // Without a microphone (or permission) the customer can still listen; a refusal is worth
  // telling HearO (recorded only: the side may allow it and retry), so the other side knows why.
  await room.localParticipant.setMicrophoneEnabled(true).catch((error) => {
    if (fail && error?.name === "NotAllowedError") Promise.resolve().then(() => fail("permission_denied")).catch(() => {});
  });
  try {
    await confirm();
  } catch (error) {
    // Not confirmed (the match ended meanwhile, or HearO is unreachable): do not stay in the room unseen.
    Promise.resolve(room.disconnect()).catch(() => {});
    throw error;
  }
  if (onDisconnected) room.on("disconnected", () => onDisconnected());
  onStep("joined");
  return room;
}
