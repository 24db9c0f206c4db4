// channels.test.mjs - a session's named side channels through the SDK (session.channel(name)):
// each has its own .in/.out pair at /realtime/v1/sessions/:s/channels/:channel/:io, written with
// the SDK's streaming writer (S2 append sessions) and its one-shot writes, read back with
// /records and SSE; the session's own pair is untouched; an .in append on a channel wakes no
// run; the channel's narrow scopes; a name outside [A-Za-z0-9._-]{1,128} is 400.
import { test } from "node:test";
import assert from "node:assert/strict";
import { auth, configure, sessions } from "@trigger.dev/sdk";
import { apiClientManager } from "@trigger.dev/core/v3";
import { collectChunks } from "./lib/sse.mjs";

const baseURL = process.env.TETHER_URL;
const key = process.env.TETHER_SECRET_KEY_B; // an environment no worker serves: runs stay queued
configure({ baseURL, accessToken: key });
const client = () => apiClientManager.clientOrThrow();
const tag = `channels-${process.pid}-${Date.now()}`;
const task = `channels-task-${process.pid}`;

async function start(suffix, taskIdentifier = `${task}-${suffix}`) {
  return sessions.start({
    type: "chat",
    externalId: `${tag}-${suffix}`,
    taskIdentifier,
    triggerConfig: { basePayload: {} },
  });
}

const subscribeAll = (sid, io, channel, want) =>
  collectChunks(sid, io, {
    channel,
    timeoutInSeconds: 5,
    abortAfterMs: 10000,
    until: (_, got) => got.length === want,
  });

test("a side channel's .out (streaming writer, append, writeControl) and .in are a pair of their own", async () => {
  const s = await start("pair");
  const ch = sessions.open(s.id).channel("tools.v1");
  async function* gen() {
    for (let i = 0; i < 50; i++) yield { step: i };
  }
  await ch.out.pipe(gen()).waitUntilComplete();
  await ch.out.append({ done: true });
  const { lastEventId } = await ch.out.writeControl("turn-complete");
  assert.equal(lastEventId, "51");
  await client().appendToSessionStream(s.id, "in", "side-in", undefined, "tools.v1");

  const out = await client().readSessionStreamRecords(s.id, "out", { channel: "tools.v1" });
  assert.deepEqual(out.records.slice(0, 50).map((r) => r.data.step), [...Array(50).keys()]);
  assert.deepEqual(out.records[50].data, { done: true });
  assert.deepEqual(out.records[51].headers, [["trigger-control", "turn-complete"]]);
  const inn = await client().readSessionStreamRecords(s.id, "in", { channel: "tools.v1" });
  assert.deepEqual(inn.records.map((r) => r.data), ["side-in"]);
  // the session's own pair and another channel are untouched
  assert.equal((await client().readSessionStreamRecords(s.id, "out")).records.length, 0);
  assert.equal((await client().readSessionStreamRecords(s.id, "in")).records.length, 0);
  assert.equal((await client().readSessionStreamRecords(s.id, "out", { channel: "other" })).records.length, 0);
  // SSE on the channel: its data records, in order
  const live = await subscribeAll(s.id, "out", "tools.v1", 51);
  assert.deepEqual(live.at(-1), { done: true });
  assert.deepEqual(live.slice(0, 50).map((c) => c.step), [...Array(50).keys()]);
});

test("an .in append on a side channel triggers no run; one on the session's .in does", async () => {
  const s = await start("wake"); // a task of its own: its runs are this session's alone
  const wakeTask = `${task}-wake`;
  // take the first run and finish it, so the session has no live run
  const res = await fetch(`${baseURL}/api/v1/workers/dequeue`, {
    method: "POST",
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: JSON.stringify({ taskIdentifiers: [wakeTask], waitSeconds: 5, workerId: "ch-w" }),
  });
  const { runs } = await res.json();
  const run = runs.find((r) => r.sessionId === s.id);
  assert.ok(run, "the first run was dequeued");
  for (const r of runs) {
    const done = await fetch(`${baseURL}/api/v1/runs/${r.id}/complete`, {
      method: "POST",
      headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
      body: JSON.stringify({ workerId: "ch-w", output: null }),
    });
    assert.equal(done.status, 200);
  }
  await client().appendToSessionStream(s.id, "in", "no wake", undefined, "tools");
  await new Promise((r) => setTimeout(r, 300));
  const queued = await (
    await fetch(`${baseURL}/api/v1/workers/dequeue`, {
      method: "POST",
      headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
      body: JSON.stringify({ taskIdentifiers: [wakeTask], waitSeconds: 0, workerId: "ch-w" }),
    })
  ).json();
  assert.deepEqual(queued.runs.filter((r) => r.sessionId === s.id), [], "no run for the channel's .in");
  // the session's own .in: a continuation
  await client().appendToSessionStream(s.id, "in", "wake");
  const woke = await (
    await fetch(`${baseURL}/api/v1/workers/dequeue`, {
      method: "POST",
      headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
      body: JSON.stringify({ taskIdentifiers: [wakeTask], waitSeconds: 5, workerId: "ch-w" }),
    })
  ).json();
  const cont = woke.runs.find((r) => r.sessionId === s.id);
  assert.ok(cont, "a continuation for the session's own .in");
  assert.equal(cont.payload.continuation, true);
});

test("a channel's scopes: read:sessions:<id>:channels:<name> reads that channel only", async () => {
  const s = await start("scopes");
  await client().appendToSessionStream(s.id, "in", "x", undefined, "notes");
  const token = await auth.createPublicToken({ scopes: { read: { sessions: `${s.id}:channels:notes` } } });
  const get = (path) => fetch(`${baseURL}${path}`, { headers: { Authorization: `Bearer ${token}` } });
  const base = `/realtime/v1/sessions/${s.id}`;
  assert.equal((await get(`${base}/channels/notes/in/records`)).status, 200);
  assert.equal((await get(`${base}/channels/other/in/records`)).status, 403);
  assert.equal((await get(`${base}/in/records`)).status, 403);
  // a session-wide token covers every channel
  const wide = await auth.createPublicToken({ scopes: { read: { sessions: s.id } } });
  const r = await fetch(`${baseURL}${base}/channels/anything/in/records`, { headers: { Authorization: `Bearer ${wide}` } });
  assert.equal(r.status, 200);
});

test("a channel name outside [A-Za-z0-9._-]{1,128} is 400", async () => {
  const s = await start("names");
  for (const bad of ["a%20b", "x".repeat(129), "%C3%A9"]) {
    const res = await fetch(`${baseURL}/realtime/v1/sessions/${s.id}/channels/${bad}/in/append`, {
      method: "POST",
      headers: { Authorization: `Bearer ${key}` },
      body: "hi",
    });
    assert.equal(res.status, 400, bad);
  }
  assert.throws(() => sessions.open(s.id).channel("bad name"), /Invalid session channel name/);
});
