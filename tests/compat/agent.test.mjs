// agent.test.mjs - the SDK's agent side: its streaming .out writer (session.out.pipe, writer,
// append), which always speaks S2's append-session protocol (s2s/proto over HTTP/2) in Node.
// A worker written with the SDK (agent/sdk-agent.mjs) takes a session's run through Tether's
// worker API and streams model-style deltas; a reader holding only the session's public token,
// as a browser does, receives every chunk in order. Then the protocol by hand (node:http2): acks
// in order with their seqs, a re-sent batch stored once, the errors before and during a session,
// and the stream-broker killed -9 under a writer without a record lost or doubled.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import http2 from "node:http2";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { auth, configure, sessions } from "@trigger.dev/sdk";
import { apiClientManager } from "@trigger.dev/core/v3";
import { collectChunks } from "./lib/sse.mjs";

const baseURL = process.env.TETHER_URL;
const key = process.env.TETHER_SECRET_KEY_AGENT;
configure({ baseURL, accessToken: key });
const client = () => apiClientManager.clientOrThrow();
const tag = `agent-${process.pid}-${Date.now()}`;

const agent = spawn(process.execPath, [fileURLToPath(new URL("agent/sdk-agent.mjs", import.meta.url))], {
  env: { ...process.env, TETHER_URL: baseURL, TETHER_SECRET_KEY: key },
  stdio: ["ignore", "inherit", "inherit"],
});
after(() => agent.kill("SIGKILL"));

// ---- s2s by hand ----

const varint = (n) => {
  const out = [];
  let v = BigInt(n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return Buffer.from(out);
};
const field = (no, bytes) => Buffer.concat([varint((no << 3) | 2), varint(bytes.length), bytes]);
// AppendInput{records: [AppendRecord{body}]}
const appendInput = (bodies) =>
  Buffer.concat(bodies.map((b) => field(1, field(3, Buffer.from(b)))));
const frame = (msg, flag = 0) => {
  const len = msg.length + 1;
  return Buffer.concat([Buffer.from([len >> 16, (len >> 8) & 0xff, len & 0xff, flag]), msg]);
};

function readVarint(buf, o) {
  let v = 0n;
  let shift = 0n;
  for (;;) {
    const b = buf[o++];
    v |= BigInt(b & 0x7f) << shift;
    if (!(b & 0x80)) return [Number(v), o];
    shift += 7n;
  }
}
// AppendAck{start, end, tail: StreamPosition{seq_num = 1, timestamp = 2}} -> {start, end, tail}
function decodeAck(buf) {
  const ack = {};
  let o = 0;
  while (o < buf.length) {
    let k, len;
    [k, o] = readVarint(buf, o);
    [len, o] = readVarint(buf, o);
    const pos = buf.subarray(o, o + len);
    o += len;
    let p = 0;
    while (p < pos.length) {
      let pk, v;
      [pk, p] = readVarint(pos, p);
      [v, p] = readVarint(pos, p);
      if (pk >> 3 === 1) ack[["", "start", "end", "tail"][k >> 3]] = v;
    }
  }
  return ack;
}
// Splits s2s frames off buf: [{flag, msg}], rest.
function frames(buf) {
  const out = [];
  while (buf.length >= 3) {
    const len = (buf[0] << 16) | (buf[1] << 8) | buf[2];
    if (buf.length < 3 + len) break;
    out.push({ flag: buf[3], msg: buf.subarray(4, 3 + len) });
    buf = buf.subarray(3 + len);
  }
  return [out, buf];
}

// One append session: sends each of `inputs` (frames) as the previous is acked, then ends.
// Returns the status, the JSON of a non-2xx answer, and every frame that came back.
function session(h2, path, token, inputs, { endEarly = false, pipeline = false } = {}) {
  return new Promise((resolve, reject) => {
    const req = h2.request({
      ":method": "POST",
      ":path": path,
      authorization: `Bearer ${token}`,
      "content-type": "s2s/proto",
      accept: "application/protobuf",
      "s2-basin": "tether-sessions",
    });
    let status;
    let rest = Buffer.alloc(0);
    const got = [];
    const body = [];
    let next = 0;
    const sendNext = () => {
      if (next < inputs.length) req.write(inputs[next++]);
      else req.end();
    };
    req.on("response", (h) => (status = h[":status"]));
    req.on("data", (d) => {
      if (status !== 200) return body.push(d);
      let fs;
      [fs, rest] = frames(Buffer.concat([rest, d]));
      for (const f of fs) {
        got.push(f);
        if (!pipeline && !(f.flag & 0x80)) sendNext();
      }
    });
    req.on("end", () => {
      const json = body.length ? JSON.parse(Buffer.concat(body).toString()) : undefined;
      resolve({ status, json, frames: got });
    });
    req.on("error", reject);
    if (pipeline) {
      for (const i of inputs) req.write(i);
      if (!endEarly) req.end();
    } else sendNext();
  });
}

async function s2Credentials(sid) {
  const init = await client().initializeSessionStream(sid, "out");
  const endpoint = new URL(init.headers["x-s2-endpoint"]);
  return {
    origin: endpoint.origin,
    path: `${endpoint.pathname}/streams/${encodeURIComponent(init.headers["x-s2-stream-name"])}/records`,
    token: init.headers["x-s2-access-token"],
  };
}

async function newSession(suffix, payload) {
  const s = await sessions.start({
    type: "chat",
    externalId: `${tag}-${suffix}`,
    taskIdentifier: payload ? "sdk-agent" : "no-worker",
    triggerConfig: { basePayload: payload ?? {} },
  });
  return s.id;
}

// Every chunk of .out through the SDK's reader with a public token (what a browser holds).
async function readAll(sid, until, timeoutInSeconds = 20) {
  const publicToken = await auth.createPublicToken({ scopes: { read: { sessions: sid } } });
  return auth.withAuth({ accessToken: publicToken }, () =>
    collectChunks(sid, "out", { until, timeoutInSeconds }),
  );
}

test("a worker written with the SDK streams deltas to .out with pipe, writer and append; a browser-style reader gets every chunk in order", async () => {
  const chunks = 300;
  const sid = await newSession("pipe", { chunks, delayMs: 1, text: "hi" });
  const got = await readAll(sid, (c) => c?.type === "done");
  assert.equal(got.length, chunks + 2);
  for (let i = 0; i < chunks; i++) {
    assert.equal(got[i].type, "text-delta");
    assert.equal(got[i].index, i, `chunk ${i} in order`);
    assert.equal(got[i].delta, `hi-${i} `);
  }
  assert.deepEqual(got[chunks], { type: "finish", chunks });
  assert.deepEqual(got[chunks + 1], { type: "done" });
  // what was stored is what was read: each chunk once, as {data, id} records
  const { records } = await client().readSessionStreamRecords(sid, "out");
  assert.equal(records.length, chunks + 2);
  assert.deepEqual(records.map((r) => r.seqNum), [...Array(chunks + 2).keys()]);
});

test("s2s by hand: each batch is acked in order with its start and end seq; the answer ends after the last ack", async () => {
  const sid = await newSession("acks");
  const { origin, path, token } = await s2Credentials(sid);
  const h2 = http2.connect(origin);
  try {
    const inputs = [["a"], ["b", "c", "d"], ["e", "f"]].map((b) => frame(appendInput(b)));
    const r = await session(h2, path, token, inputs, { pipeline: true });
    assert.equal(r.status, 200);
    assert.deepEqual(
      r.frames.map((f) => [f.flag, decodeAck(f.msg)]),
      [
        [0, { start: 0, end: 1, tail: 1 }],
        [0, { start: 1, end: 4, tail: 4 }],
        [0, { start: 4, end: 6, tail: 6 }],
      ],
    );
    const { records } = await client().readSessionStreamRecords(sid, "out");
    assert.deepEqual(records.map((x) => x.data), ["a", "b", "c", "d", "e", "f"]);
  } finally {
    h2.close();
  }
});

test("s2s by hand: a batch re-sent on a new stream (after an ack timeout) is stored once and acked with its first seqs", async () => {
  const sid = await newSession("dedup");
  const { origin, path, token } = await s2Credentials(sid);
  const h2 = http2.connect(origin);
  try {
    const b1 = frame(appendInput(['{"data":"x","id":"p1"}', '{"data":"y","id":"p2"}']));
    const b2 = frame(appendInput(['{"data":"z","id":"p3"}']));
    const first = await session(h2, path, token, [b1]);
    const again = await session(h2, path, token, [b1, b2]);
    assert.deepEqual(decodeAck(first.frames[0].msg), { start: 0, end: 2, tail: 2 });
    assert.deepEqual(again.frames.map((f) => decodeAck(f.msg)), [
      { start: 0, end: 2, tail: 2 },
      { start: 2, end: 3, tail: 3 },
    ]);
    const { records } = await client().readSessionStreamRecords(sid, "out");
    assert.deepEqual(records.map((x) => x.data), ["x", "y", "z"]);
  } finally {
    h2.close();
  }
});

test("s2s by hand: errors before the session are S2's JSON; errors in it are a terminal frame; nothing is written", async () => {
  const sid = await newSession("errors");
  const other = await newSession("errors-other");
  const { origin, path, token } = await s2Credentials(sid);
  const otherCreds = await s2Credentials(other);
  const h2 = http2.connect(origin);
  try {
    const ok = frame(appendInput(["never"]));
    let r = await session(h2, path, "not-a-token", [ok], { pipeline: true });
    assert.equal(r.status, 401);
    assert.equal(typeof r.json.message, "string");
    r = await session(h2, otherCreds.path, token, [ok], { pipeline: true });
    assert.deepEqual([r.status, r.json.code], [403, "permission_denied"]);
    r = await session(h2, "/s2/v1/streams/elsewhere/records", token, [ok], { pipeline: true });
    assert.deepEqual([r.status, r.json.code], [404, "stream_not_found"]);
    r = await session(h2, "/api/v1/sessions", key, [], { pipeline: true });
    assert.equal(r.status, 404);
    // a malformed AppendInput, a frame over 2 MiB, a compressed frame: 200, then one terminal frame
    for (const bad of [
      frame(Buffer.from([0x0a, 0x05, 0x1a])),
      Buffer.from([0x7f, 0xff, 0xff, 0x00]),
      frame(appendInput(["zstd?"]), 0x20),
    ]) {
      r = await session(h2, path, token, [bad], { pipeline: true });
      assert.equal(r.status, 200);
      assert.equal(r.frames.length, 1);
      const f = r.frames[0];
      assert.equal(f.flag & 0x80, 0x80, "terminal");
      const status = f.msg.readUInt16BE(0);
      assert.ok(status === 400 || status === 422, `status ${status}`);
      assert.equal(typeof JSON.parse(f.msg.subarray(2).toString()).message, "string");
    }
    // the input ends inside a frame
    r = await session(h2, path, token, [frame(appendInput(["cut"])).subarray(0, 5)], { pipeline: true });
    assert.equal(r.frames.at(-1).flag & 0x80, 0x80);
    const { records } = await client().readSessionStreamRecords(sid, "out");
    assert.equal(records.length, 0);
  } finally {
    h2.close();
  }
});

test("s2s by hand: 24 MiB through one session, past every flow-control window, each batch acked", async () => {
  const sid = await newSession("volume");
  const { origin, path, token } = await s2Credentials(sid);
  const h2 = http2.connect(origin);
  try {
    const big = "x".repeat(1000);
    const inputs = Array.from({ length: 24 }, (_, b) =>
      frame(appendInput(Array.from({ length: 1000 }, (_, i) => `${b}.${i}${big}`))),
    );
    // each batch after the last one's ack (node's client caps what it queues at 10 MB)
    const r = await session(h2, path, token, inputs);
    assert.equal(r.status, 200);
    assert.deepEqual(
      r.frames.map((f) => [f.flag, decodeAck(f.msg).start, decodeAck(f.msg).end]),
      inputs.map((_, b) => [0, 1000 * b, 1000 * (b + 1)]),
    );
  } finally {
    h2.close();
  }
});

// The SDK's writer piping `n` records while `fault(pid)` is done to a process: the stream-broker,
// or with `which` another one from /healthz.
async function pipeThroughFault(suffix, n, fault, which = (h) => h.actors["stream-broker"].pid) {
  const sid = await newSession(suffix);
  const out = sessions.open(sid).out;
  async function* gen() {
    for (let i = 0; i < n; i++) {
      await new Promise((r) => setTimeout(r, 5));
      yield { i };
    }
  }
  const health = await (await fetch(`${baseURL}/healthz`)).json();
  const pid = which(health);
  const faulted = new Promise((r) => setTimeout(r, 500)).then(() => fault(pid));
  faulted.catch(() => {});
  const { waitUntilComplete } = out.pipe(gen());
  await waitUntilComplete();
  await faulted;
  const { records } = await client().readSessionStreamRecords(sid, "out");
  return records.map((r) => r.data.i);
}

test("the stream-broker killed -9 under the SDK's writer: every record once, in order", async () => {
  const n = 300;
  const got = await pipeThroughFault("kill", n, (pid) => process.kill(pid, "SIGKILL"));
  assert.deepEqual(got, [...Array(n).keys()]);
});

test("the stream-broker stopped past the writer's ack timeout: the client re-sends on a new stream, nothing is doubled", async () => {
  const n = 300;
  const got = await pipeThroughFault("stop", n, async (pid) => {
    process.kill(pid, "SIGSTOP");
    // past the gateway's bus deadline and S2's 5 s ack timeout, so batches are re-sent
    await new Promise((r) => setTimeout(r, 6500)).finally(() => process.kill(pid, "SIGCONT"));
  });
  assert.deepEqual(got, [...Array(n).keys()]);
});

test("every gateway killed -9 under the SDK's writer: it reconnects to the restarted ones, every record once, in order", async () => {
  const n = 300;
  const res = await fetch(`${baseURL}/api/v1/console/processes`, { headers: { Authorization: `Bearer ${key}` } });
  const gateways = (await res.json()).children.filter((c) => c.name.startsWith("gateway")).map((c) => c.pid);
  assert.ok(gateways.length >= 1);
  // the writer's HTTP/2 connection is on one of them: all go at once
  const got = await pipeThroughFault("gateway", n, () => gateways.forEach((pid) => process.kill(pid, "SIGKILL")), () => 0);
  assert.deepEqual(got, [...Array(n).keys()]);
});
