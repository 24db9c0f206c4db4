// snapshot.test.mjs - a chat.agent session's snapshot and transcript with no object store: the
// SDK's own snapshot storage (snapshotTranscriptStorage, what chat.agent uses by default) saves
// through PUT /api/v1/sessions/:s/snapshot-url and its presigned URL and loads back, the paged
// transcript comes from GET /api/v1/sessions/:s/transcript, the agent's private state never
// leaves; presigned URLs are good for one operation on one session, signed; limits.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { auth, configure, sessions } from "@trigger.dev/sdk";
import { snapshotTranscriptStorage } from "@trigger.dev/sdk/ai";
import { apiClientManager } from "@trigger.dev/core/v3";

const baseURL = process.env.TETHER_URL;
const key = process.env.TETHER_SECRET_KEY_B;
configure({ baseURL, accessToken: key });
const client = () => apiClientManager.clientOrThrow();
const tag = `snapshot-${process.pid}-${Date.now()}`;

const start = (suffix) =>
  sessions.start({
    type: "chat",
    externalId: `${tag}-${suffix}`,
    taskIdentifier: "snapshot-task",
    triggerConfig: { basePayload: {} },
  });
const message = (i) => ({ id: `m${i}`, role: i % 2 ? "assistant" : "user", parts: [{ type: "text", text: `text ${i}` }] });

test("the SDK's snapshot storage saves and loads a transcript through Tether's presigned URLs", async () => {
  const s = await start("roundtrip");
  const storage = snapshotTranscriptStorage();
  const empty = await storage.load({ chatId: s.id });
  assert.deepEqual(empty.messages, [], "a session never persisted loads empty (404 on the URL)");
  const entries = Array.from({ length: 6 }, (_, i) => ({ id: `m${i}`, final: i < 5, message: message(i) }));
  const state = { private: "runtime lane" };
  await storage.save({ chatId: s.id }, { transcript: { entries, state }, cursors: { lastOutEventId: "12", lastInEventId: "5" } });
  const all = await storage.load({ chatId: s.id });
  assert.deepEqual(all.messages, entries.map((e) => e.message));
  assert.deepEqual(all.state, state, "the whole-snapshot read gives the runtime state back");
  assert.deepEqual(all.cursors, { lastOutEventId: "12", lastInEventId: "5" });
  assert.deepEqual(all.nonFinalIds, ["m5"]);
  // saved again: replaced, not appended
  await storage.save({ chatId: s.id }, { transcript: { entries: entries.slice(0, 2), state: null }, cursors: {} });
  assert.deepEqual((await storage.load({ chatId: s.id })).messages, [message(0), message(1)]);
});

test("GET /transcript pages the stored transcript as the SDK's pageTranscriptEntries does, without the state", async () => {
  const s = await start("transcript");
  assert.deepEqual(await client().getSessionTranscript(s.id, {}), { messages: [] });
  const entries = Array.from({ length: 5 }, (_, i) => ({ id: `m${i}`, final: true, message: message(i) }));
  await snapshotTranscriptStorage().save(
    { chatId: s.id },
    { transcript: { entries, state: { secret: "never in a page" } }, cursors: { lastOutEventId: "9", lastInEventId: "4" } },
  );
  const cursors = { lastOutEventId: "9", lastInEventId: "4" };
  const all = await client().getSessionTranscript(s.id, {});
  assert.deepEqual(all, { messages: entries.map((e) => e.message), cursors });
  assert.ok(!JSON.stringify(all).includes("never in a page"));
  assert.deepEqual(await client().getSessionTranscript(s.id, { limit: 2 }), {
    messages: [message(3), message(4)],
    cursors,
    nextCursor: "m3",
  });
  assert.deepEqual(await client().getSessionTranscript(s.id, { limit: 2, before: "m3" }), {
    messages: [message(1), message(2)],
    cursors,
    nextCursor: "m1",
  });
  assert.deepEqual(await client().getSessionTranscript(s.id, { limit: 2, before: "m1" }), {
    messages: [message(0)],
    cursors,
  });
  assert.deepEqual((await client().getSessionTranscript(s.id, { before: "gone" })).messages, []);
  // the SDK's paged load goes through it
  const page = await snapshotTranscriptStorage().load({ chatId: s.id }, { limit: 2 });
  assert.deepEqual([page.messages, page.nextCursor, page.state], [[message(3), message(4)], "m3", null]);
  // secret key only; a bad limit is 400
  const token = await auth.createPublicToken({ scopes: { read: { sessions: s.id } } });
  const res = await fetch(`${baseURL}/api/v1/sessions/${s.id}/transcript`, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(res.status, 401);
  const bad = await fetch(`${baseURL}/api/v1/sessions/${s.id}/transcript?limit=x`, { headers: { Authorization: `Bearer ${key}` } });
  assert.equal(bad.status, 400);
});

test("presigned snapshot URLs: one operation, one session, signed; 404 for a session that does not exist; 2 MiB at most", async () => {
  const s = await start("urls");
  const other = await start("urls-other");
  const put = (await client().createChatSnapshotUploadUrl(s.id)).presignedUrl;
  const get = (await client().getChatSnapshotUrl(s.id)).presignedUrl;
  assert.equal((await fetch(get)).status, 404, "nothing stored yet");
  assert.equal((await fetch(put, { method: "PUT", body: "v1" })).status, 200);
  const got = await fetch(get);
  assert.deepEqual([got.status, await got.text()], [200, "v1"]);
  assert.equal((await fetch(put)).status, 403, "a PUT URL does not read");
  assert.equal((await fetch(get, { method: "PUT", body: "x" })).status, 403, "a GET URL does not write");
  // another session's path with this signature, a changed expiry, a changed signature
  assert.equal((await fetch(get.replace(s.id, other.id))).status, 403);
  assert.equal((await fetch(get.replace(/expires=(\d+)/, (_, e) => `expires=${Number(e) + 1}`))).status, 403);
  assert.equal((await fetch(get.replace(/sig=([0-9a-f])/, (_, c) => `sig=${c === "0" ? "1" : "0"}`))).status, 403);
  assert.equal((await fetch(get.replace(/expires=\d+/, "expires=1"))).status, 403, "expired");
  assert.equal((await fetch(`${baseURL}/api/v1/sessions/${s.id}/snapshot`)).status, 403, "no signature");
  // too large: refused from its Content-Length before a byte of it is read, nothing replaced
  // (a raw socket: fetch would still be sending when the answer and the close come)
  const u = new URL(put);
  const answer = await new Promise((resolve, reject) => {
    const sock = net.connect(Number(u.port), u.hostname, () =>
      sock.write(`PUT ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nContent-Length: ${2 * 1024 * 1024 + 1}\r\n\r\n`),
    );
    let text = "";
    sock.on("data", (d) => (text += d));
    sock.on("end", () => resolve(text));
    sock.on("error", reject);
  });
  assert.match(answer, /^HTTP\/1\.1 413/);
  assert.equal(await (await fetch(get)).text(), "v1");
  // the URL routes: an unknown session is 404; a read-only token may not ask for a PUT URL
  const missing = await fetch(`${baseURL}/api/v1/sessions/session_nope/snapshot-url`, { headers: { Authorization: `Bearer ${key}` } });
  assert.equal(missing.status, 404);
  const token = await auth.createPublicToken({ scopes: { read: { sessions: s.id } } });
  const asReader = (method) =>
    fetch(`${baseURL}/api/v1/sessions/${s.id}/snapshot-url`, { method, headers: { Authorization: `Bearer ${token}` } });
  assert.equal((await asReader("GET")).status, 200);
  assert.equal((await asReader("PUT")).status, 403);
});
