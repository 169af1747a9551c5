// Feed HearoClient's delivery rule a sequence of bodies; print what reached the page.
// Run with --experimental-detect-module: static/js holds ES modules with a .js suffix.
const { HearoClient } = await import("../../../static/js/hearo-client.js");
const { format } = await import("../../../static/js/page.js");

const shown = [];
const client = new HearoClient({
  config: { pollSeconds: 1, heartbeatSeconds: 10, retryMaxSeconds: 3 },
  onMessage: (body, meta) => shown.push({ ...body, snapshot: meta.snapshot }),
});
const steps = JSON.parse(process.argv[2]);
for (const [body, snapshot] of steps) client._deliver(body, snapshot);
console.log(JSON.stringify({ shown, formatted: format("%(a)s and %(b)s", { a: 1, b: "two" }) }));
