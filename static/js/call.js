/**
 * The voice call: fetch a LiveKit token from HearO, join the room with
 * livekit-client, then confirm the join to HearO. livekit-client is large, so
 * its UMD bundle (served from node_modules) loads only when a call starts.
 */

const CONNECT_TIMEOUT_MS = 10000;

export class CallUnreachable extends Error {}

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
    timer = setTimeout(() => reject(new CallUnreachable("timeout")), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Join the caller's call; resolve with the connected Room.
 *
 * @param {object} options
 * @param {() => Promise<{url, token, roomName, identity}>} options.grant  POST /api/livekit/token
 * @param {() => Promise<void>} options.confirm  POST /api/matches/{id}/joined
 * @param {string} options.livekitUrl    the configured server, when the grant names none
 * @param {string} options.livekitScript the UMD bundle's URL
 * @param {(step: string) => void} options.onStep  "fetching", "connecting", "joined"
 * @param {HTMLElement} options.audioHost where remote audio elements go
 */
export async function joinCall({ grant, confirm, livekitUrl, livekitScript, onStep, audioHost }) {
  onStep("fetching");
  const access = await grant();
  onStep("connecting");
  const LK = await loadLivekit(livekitScript);
  const room = new LK.Room({ adaptiveStream: true, dynacast: true });
  room.on(LK.RoomEvent.TrackSubscribed, (track) => {
    if (track.kind === "audio") audioHost.append(track.attach());
  });
  room.on(LK.RoomEvent.TrackUnsubscribed, (track) => track.detach().forEach((el) => el.remove()));
  try {
    await withTimeout(room.connect(access.url || livekitUrl, access.token), CONNECT_TIMEOUT_MS);
  } catch (error) {
    Promise.resolve(room.disconnect()).catch(() => {});
    throw error instanceof CallUnreachable ? error : new CallUnreachable(String(error?.message ?? error));
  }
  // Without a microphone (or permission) the customer can still listen.
  await room.localParticipant.setMicrophoneEnabled(true).catch(() => {});
  await confirm();
  onStep("joined");
  return room;
}
