// sessions.test.mjs - the SDK's sessions API against Tether: start (create and cached), retrieve
// by either id, update, close, end-and-continue. The SDK parses every response with its own zod
// schemas, so a shape Tether gets wrong fails here.
import { test } from "node:test";
import assert from "node:assert/strict";
import { configure, sessions } from "@trigger.dev/sdk";
import { apiClientManager } from "@trigger.dev/core/v3";

const baseURL = process.env.TETHER_URL;
const key = process.env.TETHER_SECRET_KEY;
configure({ baseURL, accessToken: key });
const ext = `compat-${process.pid}-${Date.now()}`;

test("sessions.start creates a session with a live run and a session token", async () => {
  const s = await sessions.start({
    type: "chat.agent",
    externalId: ext,
    taskIdentifier: "echo",
    triggerConfig: { basePayload: { hello: "world" }, idleTimeoutInSeconds: 30, tags: ["t1"] },
    tags: ["compat"],
    metadata: { by: "compat" },
  });
  assert.match(s.id, /^session_c[0-9a-z]{24}$/);
  assert.equal(s.externalId, ext);
  assert.match(s.runId, /^run_/);
  assert.equal(s.currentRunId, s.runId);
  assert.equal(s.isCached, false);
  assert.ok(s.publicAccessToken.split(".").length === 3);
  assert.ok(s.createdAt instanceof Date);
});

test("sessions.start again with the same externalId is cached, same run", async () => {
  const first = await sessions.retrieve(ext);
  const again = await sessions.start({
    type: "chat.agent",
    externalId: ext,
    taskIdentifier: "echo",
    triggerConfig: { basePayload: { hello: "again" } },
  });
  assert.equal(again.isCached, true);
  assert.equal(again.id, first.id);
  assert.equal(again.runId, first.currentRunId);
  assert.deepEqual(again.triggerConfig.basePayload, { hello: "again" }); // refreshed
});

test("sessions.retrieve by friendly id and by externalId", async () => {
  const byExt = await sessions.retrieve(ext);
  const byId = await sessions.retrieve(byExt.id);
  assert.equal(byId.id, byExt.id);
  assert.deepEqual(byId.tags, ["compat"]);
  assert.deepEqual(byId.metadata, { by: "compat" });
});

test("sessions.update changes tags and metadata", async () => {
  const u = await sessions.update(ext, { tags: ["a", "b"], metadata: { n: 1 } });
  assert.deepEqual(u.tags, ["a", "b"]);
  assert.deepEqual(u.metadata, { n: 1 });
});

test("endAndContinueSession from a run that is not current does not swap", async () => {
  const s = await sessions.retrieve(ext);
  const other = await sessions.start({
    type: "chat.agent",
    taskIdentifier: "echo",
    triggerConfig: { basePayload: {} },
  });
  const client = apiClientManager.clientOrThrow();
  const r = await client.endAndContinueSession(s.id, { callingRunId: other.runId, reason: "upgrade" });
  assert.equal(r.swapped, false);
  assert.equal(r.runId, s.currentRunId);
  const r2 = await client.endAndContinueSession(s.id, { callingRunId: s.currentRunId, reason: "upgrade" });
  assert.equal(r2.swapped, true);
  assert.notEqual(r2.runId, s.currentRunId);
  assert.equal((await sessions.retrieve(ext)).currentRunId, r2.runId);
});

test("sessions.close is write-once, and a closed session refuses start with 409", async () => {
  const c1 = await sessions.close(ext, { reason: "first" });
  assert.ok(c1.closedAt instanceof Date);
  assert.equal(c1.closedReason, "first");
  const c2 = await sessions.close(ext, { reason: "second" });
  assert.equal(c2.closedReason, "first");
  assert.equal(c2.closedAt.getTime(), c1.closedAt.getTime());
  await assert.rejects(
    sessions.start({ type: "chat.agent", externalId: ext, taskIdentifier: "echo",
                     triggerConfig: { basePayload: {} } }),
    (e) => e.status === 409,
  );
});
