// Drive @stomp/stompjs over sockjs-client (both from the npm registry) against a HearO node.
// Usage: node sockjs_stomp.mjs <baseUrl> <transport> <token> <customerId> <aheadToken> <foreignCustomerId>
// Prints one JSON line per observation; the Python test asserts on them.
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { Client } = require('@stomp/stompjs');
const SockJS = require('sockjs-client');

const [base, transport, token, customerId, aheadToken, foreignId] = process.argv.slice(2);
const say = (o) => console.log(JSON.stringify(o));
const deadline = setTimeout(() => { say({ event: 'timeout' }); process.exit(2); }, 20000);

function client(onConnect) {
  const c = new Client({
    webSocketFactory: () => new SockJS(`${base}/ws/sockjs`, null, { transports: [transport] }),
    connectHeaders: { Authorization: `Bearer ${token}` },
    reconnectDelay: 0,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
  });
  c.onConnect = () => onConnect(c);
  c.onStompError = (f) => say({ event: 'error', message: f.headers.message, body: f.body });
  return c;
}

// 1. Own topic: snapshot, a pushed change, then DISCONNECT with a receipt.
const first = client((c) => {
  say({ event: 'connected', transport: c.webSocket && c.webSocket.transport });
  let seen = 0;
  c.subscribe(`/topic/queue-rank/${customerId}`, async (m) => {
    seen += 1;
    say({ event: 'message', body: JSON.parse(m.body) });
    if (seen === 1) {
      const r = await fetch(`${base}/api/queue/cancel`, { method: 'POST', headers: { Authorization: `Bearer ${aheadToken}` } });
      say({ event: 'cancelled-ahead', status: r.status });
    } else if (seen === 2) {
      c.onDisconnect = (receipt) => {
        say({ event: 'disconnect-receipt', receiptId: receipt.headers['receipt-id'] });
        second.activate();
      };
      await c.deactivate();
    }
  });
});

// 2. A foreign topic: ERROR.
const second = client((c) => {
  c.onStompError = (f) => {
    say({ event: 'foreign-error', message: f.headers.message });
    clearTimeout(deadline);
    c.deactivate().then(() => process.exit(0));
  };
  c.subscribe(`/topic/queue-rank/${foreignId}`, (m) => say({ event: 'leak', body: m.body }));
});

first.activate();
