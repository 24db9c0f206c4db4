// echo.test.mjs - a session started with the SDK (sessions.start) and driven end to end by the
// example worker (examples/echo-agent, started by run.sh in an environment of its own): messages
// go in with session.in.send, replies and turn-complete records come back through the SDK's
// reader; the run idles out and a continuation resumes after the cursor; a browser holding only
// the session's public access token does the same.
import { test } from "node:test";
import assert from "node:assert/strict";
import { auth, configure, runs, sessions } from "@trigger.dev/sdk";
import { apiClientManager } from "@trigger.dev/core/v3";

const baseURL = process.env.TETHER_URL;
const key = process.env.TETHER_SECRET_KEY_ECHO;
configure({ baseURL, accessToken: key });
const ext = `echo-${process.pid}-${Date.now()}`;
let started;

const header = (c, name) => c.headers.find(([n]) => n === name)?.[1];

// Reads .out through the SDK until `want` replies (and their turn-completes) are in.
async function replies(session, want, lastEventId) {
  const controls = [];
  const chunks = [];
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), 15000);
  const stream = await session.out.read({
    signal: stop.signal,
    timeoutInSeconds: 15,
    lastEventId,
    onControl: (c) => controls.push(c),
  });
  const reader = stream.getReader();
  while (chunks.length < want) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
  }
  // The turn-complete after the last reply reaches onControl only while the stream is read on
  // (control records are routed as they are pulled, and enqueue nothing).
  reader.read().catch(() => {});
  while (controls.length < want && !stop.signal.aborted) await new Promise((r) => setTimeout(r, 20));
  stop.abort();
  clearTimeout(timer);
  await reader.cancel().catch(() => {});
  return { chunks, controls };
}

async function until(what, fn, ms = 10000) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > ms) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test("sessions.start, then every message sent is echoed, each followed by its turn-complete", async () => {
  started = await sessions.start({
    type: "chat.agent",
    externalId: ext,
    taskIdentifier: "echo",
    triggerConfig: { basePayload: {}, idleTimeoutInSeconds: 2 },
  });
  const session = sessions.open(started.id);
  await session.in.send("hello");
  await session.in.send({ text: "an object" });
  const { chunks, controls } = await replies(session, 2);
  assert.deepEqual(chunks, [
    { type: "echo", text: "hello" },
    { type: "echo", text: '{"text":"an object"}' },
  ]);
  assert.deepEqual(
    controls.map((c) => [c.subtype, c.seqNum, header(c, "session-in-event-id")]),
    [
      ["turn-complete", 1, "0"],
      ["turn-complete", 3, "1"],
    ],
  );
});

test("the run completes once .in is idle; the next message gets a continuation", async () => {
  await until("the first run to complete", async () => (await runs.retrieve(started.runId)).status === "COMPLETED");
  const session = sessions.open(ext);
  await session.in.send("again");
  const { chunks, controls } = await replies(session, 1, "3");
  assert.deepEqual(chunks, [{ type: "echo", text: "again" }]);
  assert.equal(header(controls[0], "session-in-event-id"), "2");
  const now = await sessions.retrieve(ext);
  assert.notEqual(now.currentRunId, started.runId);

  // .out as a run booting would read it: each .in record answered exactly once, in order
  const { records } = await apiClientManager.clientOrThrow().readSessionStreamRecords(ext, "out");
  assert.deepEqual(
    records.map((r) => (r.headers ? `@${header(r, "session-in-event-id")}` : r.data.text)),
    ["hello", "@0", '{"text":"an object"}', "@1", "again", "@2"],
  );
});

test("a browser holding only the session's public access token talks to the agent", async () => {
  await auth.withAuth({ accessToken: started.publicAccessToken }, async () => {
    const session = sessions.open(ext);
    await session.in.send("from the browser");
    const { chunks, controls } = await replies(session, 1, "5");
    assert.deepEqual(chunks, [{ type: "echo", text: "from the browser" }]);
    assert.equal(header(controls[0], "session-in-event-id"), "3");
  });
});
