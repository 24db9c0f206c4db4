// sessions_list.test.mjs - the SDK's sessions.list() against Tether: filters (type, tag,
// taskIdentifier, externalId, status lists, period, from/to), page size, auto-pagination with
// `for await` (page[after] from pagination.next) and page[before]. The SDK
// parses every page with its own zod schema (ListSessionsResponseBody).
import { test } from "node:test";
import assert from "node:assert/strict";
import { configure, sessions } from "@trigger.dev/sdk";

configure({ baseURL: process.env.TETHER_URL, accessToken: process.env.TETHER_SECRET_KEY });
const tag = `list-${process.pid}-${Date.now()}`;
const type = `compat.list.${process.pid}`;
const made = []; // newest last

test("sessions made for the list", async () => {
  for (let i = 0; i < 5; i++) {
    const s = await sessions.start({
      type: i === 4 ? `${type}.other` : type,
      externalId: `${tag}-${i}`,
      taskIdentifier: i % 2 ? "list-odd" : "list-even",
      triggerConfig: { basePayload: {} },
      tags: [tag, `n:${i}`],
    });
    made.push(s.id);
  }
  await sessions.close(made[0], { reason: "done" });
});

test("sessions.list with auto-pagination returns every match, newest first", async () => {
  const seen = [];
  for await (const s of sessions.list({ tag, limit: 2 })) {
    seen.push(s.id);
    assert.ok(s.createdAt instanceof Date);
    assert.ok(Array.isArray(s.tags) && s.tags.includes(tag));
  }
  assert.deepEqual(seen, [...made].reverse());
});

test("pages go forward with next; page[before] goes back", async () => {
  const p1 = await sessions.list({ tag, limit: 2 });
  assert.deepEqual(p1.data.map((s) => s.id), [made[4], made[3]]);
  assert.equal(p1.hasPreviousPage(), false);
  const p2 = await p1.getNextPage();
  assert.deepEqual(p2.data.map((s) => s.id), [made[2], made[1]]);
  assert.equal(p2.hasPreviousPage(), true);
  // the cursors are internal ids: the one before p2's first row gives p1 back
  const back = await sessions.list({ tag, limit: 2, before: p2.pagination.previous });
  assert.deepEqual(back.data.map((s) => s.id), [made[4], made[3]]);
  assert.equal(back.hasPreviousPage(), false);
  // the SDK's getPreviousPage() keeps page[after] and adds page[before]: the contract's 400
  await assert.rejects(p2.getPreviousPage(), (e) => e.status === 400);
});

test("filters: type list, taskIdentifier, externalId, status list, period, from/to", async () => {
  const ids = async (opts) => {
    const out = [];
    for await (const s of sessions.list({ tag, ...opts })) out.push(s.id);
    return out;
  };
  assert.deepEqual(await ids({ type }), [made[3], made[2], made[1], made[0]]);
  assert.deepEqual(await ids({ type: [type, `${type}.other`] }), [...made].reverse());
  assert.deepEqual(await ids({ taskIdentifier: "list-odd" }), [made[3], made[1]]);
  assert.deepEqual(await ids({ externalId: `${tag}-2` }), [made[2]]);
  assert.deepEqual(await ids({ status: "CLOSED" }), [made[0]]);
  assert.deepEqual(await ids({ status: ["ACTIVE", "CLOSED"] }), [...made].reverse());
  assert.deepEqual(await ids({ status: "EXPIRED" }), []);
  assert.equal((await ids({ period: "1h" })).length, 5);
  assert.deepEqual(await ids({ from: new Date(Date.now() + 3600e3) }), []);
  assert.equal((await ids({ to: new Date(Date.now() + 1000) })).length, 5);
});

test("a closed session's item carries closedAt and closedReason", async () => {
  const page = await sessions.list({ tag, status: "CLOSED" });
  assert.equal(page.data.length, 1);
  assert.ok(page.data[0].closedAt instanceof Date);
  assert.equal(page.data[0].closedReason, "done");
});
