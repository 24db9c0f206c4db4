// streams.test.mjs - a session's channels through the SDK's own client: appendToSessionStream,
// readSessionStreamRecords and subscribeToSessionStream (data records as chunks, trigger-control
// records routed to onControl with their seq, resume after a cursor, live delivery), and the
// SDK's one-shot writes to .out through the S2 endpoint (writeControl, trimTo). The SDK parses
// every answer with its own schemas and SSE reader, so a shape Tether gets wrong fails here.
import { test } from "node:test";
import assert from "node:assert/strict";
import { configure, sessions } from "@trigger.dev/sdk";
import { apiClientManager } from "@trigger.dev/core/v3";

const baseURL = process.env.TETHER_URL;
const key = process.env.TETHER_SECRET_KEY;
configure({ baseURL, accessToken: key });
const client = () => apiClientManager.clientOrThrow();
const ext = `streams-${process.pid}-${Date.now()}`;
let sid;

// Records on .out the way a worker that is not the SDK writes them: the S2 JSON append on the
// endpoint the SDK's own initializeSessionStream (PUT) names.
async function s2Append(session, records) {
  const init = await client().initializeSessionStream(session, "out");
  const url = `${init.headers["x-s2-endpoint"]}/streams/${encodeURIComponent(init.headers["x-s2-stream-name"])}/records`;
  const res = await fetch(url, {
    method: "POST",
    headers: {
      Authorization: `Bearer ${init.headers["x-s2-access-token"]}`,
      "Content-Type": "application/json",
      "S2-Format": "raw",
    },
    body: JSON.stringify({ records }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  return res.json();
}

// Reads a subscription until the server ends it (Timeout-Seconds) or `enough` says stop.
async function collect(io, options = {}, enough = () => false) {
  const controls = [];
  const parts = [];
  const chunks = [];
  const stop = new AbortController();
  const stream = await client().subscribeToSessionStream(sid, io, {
    timeoutInSeconds: 1,
    signal: stop.signal,
    onControl: (c) => controls.push(c),
    onPart: (p) => parts.push(p.id),
    ...options,
  });
  for await (const chunk of stream) {
    chunks.push(chunk);
    if (enough(chunks)) {
      stop.abort();
      break;
    }
  }
  return { chunks, controls, parts };
}

test("appendToSessionStream appends to .in and answers ok", async () => {
  const s = await sessions.start({
    type: "chat",
    externalId: ext,
    taskIdentifier: "chat-agent",
    triggerConfig: { basePayload: {} },
  });
  sid = s.id;
  assert.deepEqual(await client().appendToSessionStream(sid, "in", "hello"), { ok: true });
  assert.deepEqual(await client().appendToSessionStream(ext, "in", JSON.stringify({ a: 1 })), { ok: true });
});

test("readSessionStreamRecords returns each record once, the envelope unwrapped", async () => {
  const { records } = await client().readSessionStreamRecords(sid, "in");
  assert.deepEqual(
    records.map((r) => [r.seqNum, r.data]),
    [
      [0, "hello"],
      [1, '{"a":1}'],
    ],
  );
  // the SDK made a part id per append; it comes back as the record's id
  assert.match(records[0].id, /^[A-Za-z0-9_-]{21}$/);
  assert.notEqual(records[0].id, records[1].id);
  assert.equal(records[0].headers, undefined);
});

test("readSessionStreamRecords resumes after afterEventId", async () => {
  const after0 = await client().readSessionStreamRecords(ext, "in", { afterEventId: "0" });
  assert.deepEqual(after0.records.map((r) => r.data), ['{"a":1}']);
  const past = await client().readSessionStreamRecords(sid, "in", { afterEventId: "99" });
  assert.deepEqual(past.records, []);
});

test("subscribeToSessionStream: data records as chunks, control records to onControl", async () => {
  await client().appendToSessionStream(sid, "out", "from the server route");
  const ack = await s2Append(sid, [
    { body: JSON.stringify({ data: { type: "text", text: "hi" }, id: "r1" }) },
    {
      headers: [
        ["trigger-control", "turn-complete"],
        ["session-in-event-id", "1"],
      ],
      body: "",
    },
  ]);
  assert.deepEqual([ack.start.seq_num, ack.end.seq_num], [1, 3]);

  const { chunks, controls, parts } = await collect("out");
  assert.deepEqual(chunks, ["from the server route", { type: "text", text: "hi" }]);
  assert.equal(controls.length, 1);
  assert.equal(controls[0].subtype, "turn-complete");
  assert.equal(controls[0].seqNum, 2);
  assert.deepEqual(controls[0].headers, [
    ["trigger-control", "turn-complete"],
    ["session-in-event-id", "1"],
  ]);
  assert.deepEqual(parts, ["0", "1", "2"]);

  const { records } = await client().readSessionStreamRecords(sid, "out");
  assert.deepEqual(
    records.map((r) => [r.seqNum, r.data, r.id, r.headers?.[0]?.[1]]),
    [
      [0, "from the server route", records[0].id, undefined],
      [1, { type: "text", text: "hi" }, "r1", undefined],
      [2, "", "", "turn-complete"],
    ],
  );
});

test("subscribeToSessionStream resumes after lastEventId", async () => {
  const { chunks, controls, parts } = await collect("out", { lastEventId: "1" });
  assert.deepEqual(chunks, []);
  assert.deepEqual(
    controls.map((c) => c.seqNum),
    [2],
  );
  assert.deepEqual(parts, ["2"]);
  const fromIn = await collect("in", { lastEventId: "0" });
  assert.deepEqual(fromIn.chunks, ['{"a":1}']);
});

test("a record written twice with the same id reaches the SDK once", async () => {
  const body = JSON.stringify({ data: { type: "text", text: "once" }, id: "dup-1" });
  await s2Append(sid, [{ body }, { body }]);
  const { chunks, parts } = await collect("out", { lastEventId: "2" });
  assert.deepEqual(chunks, [{ type: "text", text: "once" }]);
  assert.deepEqual(parts, ["3"]); // the SDK drops the second before onPart
});

test("subscribeToSessionStream delivers live appends, in order", async () => {
  const reading = collect("in", { lastEventId: "1", timeoutInSeconds: 5 }, (c) => c.length === 3);
  await new Promise((r) => setTimeout(r, 300));
  const t0 = Date.now();
  for (const m of ["l0", "l1", "l2"]) await client().appendToSessionStream(sid, "in", m);
  const { chunks, parts } = await reading;
  assert.deepEqual(chunks, ["l0", "l1", "l2"]);
  assert.deepEqual(parts, ["2", "3", "4"]);
  assert.ok(Date.now() - t0 < 3000, "delivered live, not at the end of the wait");
});

test("the SDK's one-shot .out writes (writeControl, trimTo) go through the S2 endpoint", async () => {
  const out = sessions.open(sid).out;
  const { lastEventId } = await out.writeControl("turn-complete", [["session-in-event-id", "4"]]);
  assert.equal(lastEventId, "5");
  await out.trimTo(5);
  const { records } = await client().readSessionStreamRecords(sid, "out");
  assert.deepEqual(
    records.map((r) => [r.seqNum, r.headers?.[1]?.[1]]),
    [[5, "4"]],
  );
});

test('subscribeToSessionStream with from: "latest" (X-Trigger-Stream-Start) gets only what is appended after it connects', async () => {
  const before = await client().readSessionStreamRecords(sid, "in");
  assert.ok(before.records.length > 0, "the stream has history to skip");
  const reading = collect("in", { from: "latest", timeoutInSeconds: 5 }, (c) => c.length === 1);
  await new Promise((r) => setTimeout(r, 300));
  await client().appendToSessionStream(sid, "in", "after-latest");
  const { chunks } = await reading;
  assert.deepEqual(chunks, ["after-latest"]);
});
