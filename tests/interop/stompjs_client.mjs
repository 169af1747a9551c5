// Drive @stomp/stompjs 7 (as published on npm) against a real HearO node.
//
// Usage: node --experimental-websocket stompjs_client.mjs <scenario> <factory>  < config.json
//   scenario: "rank" (a customer's own topic, a foreign one), "broker" (the conformance broker's
//             fan-out) or "queues" (its transactions, queues, acks and redelivery)
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

// A browser's Origin must be allowed. Without config.origin no Origin is sent at all (the ws
// package sends none by default): a client authenticating in CONNECT needs none.
function socket() {
  const headers = config.origin ? { Origin: config.origin } : {};
  if (factory === 'ws') return new NodeWs(config.url, PROTOCOLS, config.origin ? { origin: config.origin } : {});
  return new WebSocket(config.url, { protocols: PROTOCOLS, headers });
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

// -- the conformance broker: transactions, competing consumers, acks, NACK, redelivery --

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(predicate, what) {
  for (let waited = 0; waited < 8000; waited += 20) {
    const found = predicate();
    if (found) return found;
    await sleep(20);
  }
  throw new Error(`waited 8 s for ${what}`);
}

async function queues() {
  const guest = { login: 'guest', passcode: 'guest' };
  const inbox = [];
  const clients = {};
  async function join(name) {
    clients[name] = client(name, guest);
    await connected(clients[name]);
    return clients[name];
  }
  async function subscribe(name, destination, headers = {}) {
    const id = `r-${name}-${destination}`;
    const subscribed = receipt(clients[name], id);
    clients[name].subscribe(destination, (m) => {
      inbox.push({ client: name, m });
      say({
        event: 'message', client: name, destination, body: m.body,
        redelivered: m.headers.redelivered || null, hasAck: 'ack' in m.headers,
      });
    }, { ...headers, receipt: id });
    await subscribed;
  }
  let receipts = 0;
  async function publish(destination, body, headers = {}) {
    const id = `send-${receipts++}`;
    const sent = receipt(clients.p, id);
    clients.p.publish({ destination, body, headers: { ...headers, receipt: id } });
    await sent;
  }
  async function ack(entry, method = 'ack', headers = {}) {
    const id = `settle-${receipts++}`;
    const settled = receipt(clients[entry.client], id);
    entry.m[method]({ ...headers, receipt: id });
    await settled;
  }
  const got = (destination, body, redelivered = null) => inbox.find(
    (e) => e.m.headers.destination === destination && e.m.body === body && (e.m.headers.redelivered || null) === redelivered,
  );
  const { topic, queue } = config;

  await join('p');
  await join('a');
  await join('b');
  // Topics: a transaction's SENDs reach every subscriber on COMMIT, none on ABORT.
  await subscribe('a', topic);
  await subscribe('b', topic);
  const dropped = clients.p.begin();
  clients.p.publish({ destination: topic, body: 'aborted', headers: { transaction: dropped.id } });
  dropped.abort();
  const kept = clients.p.begin();
  clients.p.publish({ destination: topic, body: 'committed', headers: { transaction: kept.id } });
  await sleep(300);
  say({ event: 'before-commit', count: inbox.length });
  kept.commit();
  await publish(topic, 'after');
  await until(() => inbox.filter((e) => e.m.body === 'after').length === 2, 'the topic messages');

  // A queue: each message to one of two competing consumers, in both client ack modes.
  await subscribe('a', queue, { ack: 'client-individual' });
  await subscribe('b', queue, { ack: 'client' });
  for (const body of ['q0', 'q1', 'q2', 'q3']) await publish(queue, body);
  const aborted = clients.p.begin();
  clients.p.publish({ destination: queue, body: 'q-aborted', headers: { transaction: aborted.id } });
  aborted.abort();
  const committed = clients.p.begin();
  clients.p.publish({ destination: queue, body: 'q-committed', headers: { transaction: committed.id } });
  committed.commit();
  await publish(queue, 'q-after');
  const fromQueue = () => inbox.filter((e) => e.m.headers.destination === queue);
  await until(() => fromQueue().length === 6, 'six queue messages');
  // a acks each message; b acks only its last one (cumulative).
  for (const entry of fromQueue().filter((e) => e.client === 'a')) await ack(entry);
  const ofB = fromQueue().filter((e) => e.client === 'b');
  if (ofB.length) await ack(ofB[ofB.length - 1]);
  say({ event: 'step', name: 'acked' });

  // NACK: the message comes back, marked redelivered.
  await publish(queue, 'q-nack');
  await ack(await until(() => got(queue, 'q-nack'), 'q-nack'), 'nack');
  await ack(await until(() => got(queue, 'q-nack', 'true'), 'q-nack again'));

  // A consumer that leaves without acking: its message goes to the other one.
  await publish(queue, 'q-held');
  const held = await until(() => got(queue, 'q-held'), 'q-held');
  const stays = held.client === 'a' ? 'b' : 'a';
  say({ event: 'step', name: 'holder-leaves', client: held.client });
  ending = true;
  await clients[held.client].deactivate();
  ending = false;
  const redelivered = await until(() => got(queue, 'q-held', 'true'), 'q-held redelivered');
  say({ event: 'step', name: 'redelivered-to', client: redelivered.client, expected: stays });
  await ack(redelivered);

  // An ACK inside a transaction: dropped by ABORT, effective on COMMIT.
  await publish(queue, 'q-txack');
  const txack = await until(() => got(queue, 'q-txack'), 'q-txack');
  const undone = clients[stays].begin();
  txack.m.ack({ transaction: undone.id });
  undone.abort();
  await join('c');
  await subscribe('c', queue, { ack: 'client-individual' });
  ending = true;
  await clients[stays].deactivate();
  ending = false;
  const again = await until(() => got(queue, 'q-txack', 'true'), 'q-txack redelivered');
  const done = clients.c.begin();
  again.m.ack({ transaction: done.id });
  done.commit();
  ending = true;
  await clients.c.deactivate();
  // Nothing is left over: a fresh consumer gets nothing.
  ending = false;
  await join('d');
  await subscribe('d', queue, { ack: 'client-individual' });
  await sleep(500);
  say({ event: 'leftover', count: inbox.filter((e) => e.client === 'd').length });
  ending = true;
  await clients.d.deactivate();
  await clients.p.deactivate();
  finish();
}

const scenarios = { rank, broker, queues };
scenarios[scenario]().catch((e) => { say({ event: 'crash', error: String(e && e.stack || e) }); process.exit(3); });
