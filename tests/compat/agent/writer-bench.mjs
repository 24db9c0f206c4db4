// writer-bench.mjs - (tests/bench/stream_writer.sh) the SDK's streaming .out writer against Tether (S2 append sessions over
// HTTP/2, gateway/s2s.h), next to the unary append from the same client in the same run:
//   - chunks/s: W writers (one session each) piping N chunks of ~100 bytes as fast as the SDK
//     takes them; the unary figure: the same chunks as POST .../out/append, 64 in flight;
//   - chunk -> subscriber latency: one writer at a fixed rate, one SSE subscriber through the
//     SDK's reader; each chunk carries its send time (one process, one clock).
// Prints one JSON line per case. Environment: TETHER_URL, TETHER_SECRET_KEY, BENCH_CHUNKS.
import { configure, sessions } from "@trigger.dev/sdk";
import { apiClientManager } from "@trigger.dev/core/v3";

const url = process.env.TETHER_URL;
const key = process.env.TETHER_SECRET_KEY;
const chunks = Number(process.env.BENCH_CHUNKS ?? 20000);
configure({ baseURL: url, accessToken: key });
const client = () => apiClientManager.clientOrThrow();
const tag = `bw-${process.pid}`;
const text = "x".repeat(80);

async function newSession(name) {
  const s = await sessions.start({
    type: "chat",
    externalId: `${tag}-${name}`,
    taskIdentifier: "bench",
    triggerConfig: { basePayload: {} },
  });
  return s.id;
}

async function* deltas(n, everyMs) {
  for (let i = 0; i < n; i++) {
    if (everyMs) await new Promise((r) => setTimeout(r, everyMs));
    yield { type: "text-delta", i, delta: text, sentAt: performance.timeOrigin + performance.now() };
  }
}

async function writers(w) {
  const ids = await Promise.all(Array.from({ length: w }, (_, i) => newSession(`w${w}-${i}`)));
  const per = Math.floor(chunks / w);
  const t0 = performance.now();
  await Promise.all(ids.map((sid) => sessions.open(sid).out.pipe(deltas(per)).waitUntilComplete()));
  const s = (performance.now() - t0) / 1000;
  // every chunk stored once (/records answers a page at a time)
  let stored = 0;
  let after;
  for (;;) {
    const { records } = await client().readSessionStreamRecords(ids[0], "out", after === undefined ? {} : { afterEventId: String(after) });
    if (records.length === 0) break;
    stored += records.length;
    after = records.at(-1).seqNum;
  }
  if (stored !== per) throw new Error(`writer 0 stored ${stored} of ${per}`);
  console.log(JSON.stringify({ case: `s2s_writer_${w}`, writers: w, chunks: per * w, seconds: +s.toFixed(3), chunks_per_s: Math.round((per * w) / s), appends_per_s: Math.round((per * w) / s) }));
}

async function unary(inflight) {
  const sid = await newSession(`unary-${inflight}`);
  const n = Math.min(chunks, 10000);
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inflight }, async () => {
      while (next < n) {
        const i = next++;
        const res = await fetch(`${url}/realtime/v1/sessions/${sid}/out/append`, {
          method: "POST",
          headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
          body: JSON.stringify({ type: "text-delta", i, delta: text }),
        });
        if (!res.ok) throw new Error(`append ${res.status}`);
        await res.arrayBuffer();
      }
    }),
  );
  const s = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ case: `unary_append_${inflight}`, inflight, chunks: n, seconds: +s.toFixed(3), chunks_per_s: Math.round(n / s) }));
}

async function latency(rate, n) {
  const sid = await newSession(`latency-${rate}`);
  const stop = new AbortController();
  const lat = [];
  const stream = await client().subscribeToSessionStream(sid, "out", { timeoutInSeconds: 60, signal: stop.signal });
  const reading = (async () => {
    for await (const c of stream) {
      lat.push(performance.timeOrigin + performance.now() - c.sentAt);
      if (lat.length === n) break;
    }
    stop.abort();
  })();
  await new Promise((r) => setTimeout(r, 300)); // the subscription is live before the first chunk
  await sessions.open(sid).out.pipe(deltas(n, 1000 / rate)).waitUntilComplete();
  await reading;
  lat.sort((a, b) => a - b);
  const q = (p) => +lat[Math.min(lat.length - 1, Math.floor(p * lat.length))].toFixed(2);
  console.log(JSON.stringify({ case: `s2s_chunk_to_subscriber_${rate}hz`, rate_per_s: rate, chunks: n, delivered: lat.length, p50_ms: q(0.5), p99_ms: q(0.99), p999_ms: q(0.999), max_ms: +lat.at(-1).toFixed(2) }));
}

await writers(1);
await writers(8);
await unary(64);
await latency(100, 1000);
process.exit(0);
