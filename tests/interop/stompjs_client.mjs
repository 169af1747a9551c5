// Drive @stomp/stompjs 7 (as published on npm) against a real HearO node.
//
// Usage: node --experimental-websocket stompjs_client.mjs <scenario> <factory>  < config.json
//   scenario: "rank" (a customer's own topic, a foreign one) or "broker" (the conformance broker)
//   factory:  "undici" (Node's built-in WebSocket) or "ws" (the ws package)
// Prints one JSON line per observation; the Python test decides what is right.
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Client } = require('@stomp/stompjs');
const NodeWs = require('ws');

const PROTOCOLS = ['v12.stomp', 'v11.stomp', 'v10.stomp'];
const [scenario, factory] = process.argv.slice(2);
const config = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));
const say = (o) => console.log(JSON.stringify(o));
const deadline = setTimeout(() => { say({ event: 'timeout' }); process.exit(2); }, config.timeoutMs || 20000);

function finish() {
  clearTimeout(deadline);
  say({ event: 'done' });
  process.exit(0);
}

// Clients the server is expected to close; any other close before the end stops the run early.
const mayClose = new Set(['intruder', 'nosy']);
let ending = false;

// Channels' OriginValidator refuses a socket without Origin, and Node sends none by default.
function socket() {
  if (factory === 'ws') return new NodeWs(config.url, PROTOCOLS, { origin: config.origin });
  return new WebSocket(config.url, { protocols: PROTOCOLS, headers: { Origin: config.origin } });
}

function client(name, connectHeaders, extra = {}) {
  const c = new Client({
    webSocketFactory: socket,
    connectHeaders,
    reconnectDelay: 0,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
    ...extra,
  });
  c.onStompError = (f) => say({ event: 'error', client: name, headers: f.headers, body: f.body });
  c.onWebSocketClose = (e) => {
    say({ event: 'close', client: name, code: e.code });
    if (!ending && !mayClose.has(name)) finish();
  };
  return c;
}

function connected(c) {
  return new Promise((resolve) => {
    c.onConnect = (frame) => resolve(frame);
    c.activate();
  });
}

function closed(c) {
  return new Promise((resolve) => {
    const before = c.onWebSocketClose;
    c.onWebSocketClose = (e) => { before(e); resolve(e); };
  });
}

function receipt(c, id) {
  return new Promise((resolve) => c.watchForReceipt(id, (f) => resolve(f.headers['receipt-id'])));
}

// Deactivate and report the RECEIPT that answered stompjs's DISCONNECT.
async function disconnect(c, name) {
  ending = true;
  c.onDisconnect = (f) => say({ event: 'disconnect-receipt', client: name, receiptId: f.headers['receipt-id'] });
  await c.deactivate();
}

function describe(name, m) {
  const body = Buffer.from(m.binaryBody);
  return {
    event: 'message',
    client: name,
    headers: m.headers,
    length: body.length,
    sha256: createHash('sha256').update(body).digest('hex'),
    text: body.length <= 4096 ? m.body : undefined,
  };
}

// -- a customer: own topic, a pushed change, DISCONNECT; then a foreign topic --

async function rank() {
  const auth = { Authorization: `Bearer ${config.token}` };
  const me = client('me', auth);
  const frame = await connected(me);
  say({ event: 'connected', client: 'me', headers: frame.headers, protocol: me.webSocket.protocol });
  const done = new Promise((resolve) => {
    let seen = 0;
    me.subscribe(`/topic/queue-rank/${config.customerId}`, async (m) => {
      seen += 1;
      say({ event: 'message', client: 'me', headers: m.headers, body: JSON.parse(m.body) });
      if (seen === 1) {
        const r = await fetch(`${config.httpBase}/api/queue/cancel`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${config.aheadToken}` },
        });
        say({ event: 'cancelled-ahead', status: r.status });
      } else if (seen === 2) {
        resolve();
      }
    });
  });
  await done;
  await disconnect(me, 'me');
  ending = false;

  const nosy = client('nosy', auth);
  await connected(nosy);
  const gone = closed(nosy);
  nosy.subscribe(`/topic/queue-rank/${config.foreignId}`, (m) => say({ event: 'leak', body: m.body }));
  await gone;
  finish();
}

// -- the conformance broker: bad login, fan-out to every subscriber, receipts --

function bodyOf(spec) {
  return spec.base64 !== undefined ? { binaryBody: Buffer.from(spec.base64, 'base64') } : { body: spec.text };
}

async function broker() {
  const intruder = client('intruder', { login: config.badLogin, passcode: 'guest' });
  const rejected = closed(intruder);
  intruder.onConnect = () => say({ event: 'connected', client: 'intruder' });
  intruder.activate();
  await rejected;

  const guest = { login: 'guest', passcode: 'guest' };
  const names = ['a', 'b'];
  const clients = names.map((n) => client(n, guest, config.clientOptions || {}));
  await Promise.all(clients.map(connected));
  const expected = config.messages.length;
  const got = Object.fromEntries(names.map((n) => [n, 0]));
  let delivered;
  const all = new Promise((resolve) => { delivered = resolve; });
  if (expected === 0) delivered();
  await Promise.all(clients.map((c, i) => {
    const id = `sub-receipt-${names[i]}`;
    const subscribed = receipt(c, id);
    c.subscribe(config.destination, (m) => {
      say(describe(names[i], m));
      got[names[i]] += 1;
      if (Object.values(got).every((n) => n === expected)) delivered();
    }, { receipt: id });
    return subscribed.then((r) => say({ event: 'receipt', client: names[i], receiptId: r }));
  }));

  for (const [i, spec] of config.messages.entries()) {
    const id = `send-receipt-${i}`;
    const sent = receipt(clients[0], id);
    clients[0].publish({ destination: config.destination, headers: { ...spec.headers, receipt: id }, ...bodyOf(spec) });
    say({ event: 'receipt', client: 'a', receiptId: await sent });
  }
  await all;
  for (const [i, c] of clients.entries()) await disconnect(c, names[i]);
  finish();
}

const scenarios = { rank, broker };
scenarios[scenario]().catch((e) => { say({ event: 'crash', error: String(e && e.stack || e) }); process.exit(3); });
