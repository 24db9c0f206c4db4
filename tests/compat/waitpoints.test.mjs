// waitpoints.test.mjs - the SDK's token calls (wait.createToken, retrieveToken, listTokens,
// completeToken), a token's callback url, and the session-stream wait request
// (apiClient.createSessionStreamWaitpoint, what session.in.wait sends first) against Tether,
// parsed by the SDK's own zod schemas.
import { test } from "node:test";
import assert from "node:assert/strict";
import { configure, sessions, wait } from "@trigger.dev/sdk";
import { apiClientManager } from "@trigger.dev/core/v3";

const baseURL = process.env.TETHER_URL;
const key = process.env.TETHER_SECRET_KEY;
configure({ baseURL, accessToken: key });
const tag = `compat-${process.pid}-${Date.now()}`;

test("wait.createToken, retrieveToken, listTokens and completeToken", async () => {
  const t = await wait.createToken({ timeout: "1h", tags: [tag], idempotencyKey: tag });
  assert.match(t.id, /^waitpoint_c[0-9a-z]{24}$/);
  assert.equal(t.isCached, false);
  assert.ok(t.url.includes(t.id));
  assert.ok(t.publicAccessToken.split(".").length === 3);
  const again = await wait.createToken({ idempotencyKey: tag });
  assert.equal(again.id, t.id);
  assert.equal(again.isCached, true);

  const r = await wait.retrieveToken(t.id);
  assert.equal(r.status, "WAITING");
  assert.deepEqual(r.tags, [tag]);
  assert.ok(r.timeoutAt instanceof Date);

  const page = await wait.listTokens({ status: "WAITING", tags: [tag] });
  const ids = [];
  for await (const item of page) ids.push(item.id);
  assert.deepEqual(ids, [t.id]);

  const done = await wait.completeToken(t, { answer: 42 });
  assert.equal(done.success, true);
  const r2 = await wait.retrieveToken(t.id);
  assert.equal(r2.status, "COMPLETED");
  assert.deepEqual(r2.output, { answer: 42 });
});

test("a token's url completes it without a credential, once", async () => {
  const t = await wait.createToken({ timeout: "1h" });
  assert.match(t.url, new RegExp(`/api/v1/waitpoints/tokens/${t.id}/callback/[0-9a-f]{64}$`));
  const res = await fetch(t.url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ approved: true }),
  });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { success: true });
  const again = await fetch(t.url, { method: "POST", body: JSON.stringify({ approved: false }) });
  assert.equal(again.status, 200);
  const r = await wait.retrieveToken(t.id);
  assert.equal(r.status, "COMPLETED");
  assert.deepEqual(r.output, { approved: true });
  const bad = await fetch(t.url.replace(/.$/, (c) => (c === "0" ? "1" : "0")), {
    method: "POST",
    body: "{}",
  });
  assert.equal(bad.status, 401);
});

test("the session-stream wait request: a record already there completes it at once", async () => {
  const s = await sessions.start({
    type: "chat.agent",
    externalId: `${tag}-s`,
    taskIdentifier: "wait-compat",
    triggerConfig: { basePayload: {} },
  });
  const api = apiClientManager.clientOrThrow();
  await api.appendToSessionStream(s.id, "in", JSON.stringify({ m: "hi" }));
  const w = await api.createSessionStreamWaitpoint(s.runId, { session: s.id, io: "in" });
  assert.match(w.waitpointId, /^waitpoint_/);
  assert.equal(w.isCached, false);
  const w2 = await api.createSessionStreamWaitpoint(s.runId, {
    session: `${tag}-s`,
    io: "in",
    lastSeqNum: 0,
    timeout: "5m",
    idempotencyKey: `${tag}-k`,
    tags: "one",
  });
  const w3 = await api.createSessionStreamWaitpoint(s.runId, {
    session: `${tag}-s`,
    io: "in",
    idempotencyKey: `${tag}-k`,
  });
  assert.equal(w3.waitpointId, w2.waitpointId);
  assert.equal(w3.isCached, true);
  const b = await api.waitForWaitpointToken({ runFriendlyId: s.runId, waitpointFriendlyId: w2.waitpointId });
  assert.equal(b.success, true);
});
