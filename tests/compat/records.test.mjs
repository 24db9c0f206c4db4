// records.test.mjs - records are bytes, through the SDK's own readers: a plain append of a\0b
// and of \xff\xfe, and an S2 protobuf record with NUL and invalid UTF-8 in its header and body,
// read back with readSessionStreamRecords and subscribeToSessionStream. Each byte that is not
// UTF-8 arrives as a lone U+DC80-U+DCFF code unit (docs/gateway.md, "Record bytes"), so the
// bytes are recoverable exactly; the records around them are intact.
import { test } from "node:test";
import assert from "node:assert/strict";
import { configure, sessions } from "@trigger.dev/sdk";
import { apiClientManager } from "@trigger.dev/core/v3";

const baseURL = process.env.TETHER_URL;
const key = process.env.TETHER_SECRET_KEY;
configure({ baseURL, accessToken: key });
const client = () => apiClientManager.clientOrThrow();
const ext = `records-${process.pid}-${Date.now()}`;

// The bytes a string stands for under the rule: U+DC80-U+DCFF is one byte, the rest UTF-8.
function bytesOf(s) {
  const out = [];
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (c >= 0xdc80 && c <= 0xdcff) out.push(c - 0xdc00);
    else out.push(...new TextEncoder().encode(ch));
  }
  return Buffer.from(out);
}

async function rawAppend(part, bytes) {
  const res = await fetch(`${baseURL}/realtime/v1/sessions/${ext}/out/append`, {
    method: "POST",
    headers: { Authorization: `Bearer ${key}`, "X-Part-Id": part },
    body: bytes,
  });
  assert.equal(res.status, 200, await res.clone().text());
}

// protobuf AppendInput of one record (what S2 clients send for bytes)
function pbRecord(headers, body) {
  const ld = (num, b) => {
    const len = [];
    for (let n = b.length; ; n >>= 7) {
      len.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
      if (n <= 0x7f) break;
    }
    return Buffer.concat([Buffer.from([(num << 3) | 2, ...len]), b]);
  };
  const rec = Buffer.concat([
    ...headers.map(([n, v]) => ld(2, Buffer.concat([ld(1, n), ld(2, v)]))),
    ld(3, body),
  ]);
  return ld(1, rec);
}

test("bytes in records read back exactly through the SDK", async () => {
  await sessions.start({
    type: "chat",
    externalId: ext,
    taskIdentifier: "chat-agent",
    triggerConfig: { basePayload: {} },
  });
  await rawAppend("p0", Buffer.from("before"));
  await rawAppend("nul", Buffer.from("a\0b", "latin1"));
  await rawAppend("ff", Buffer.from([0xff, 0xfe]));
  const res = await fetch(`${baseURL}/s2/v1/streams/${encodeURIComponent(`sessions/${ext}/out`)}/records`, {
    method: "POST",
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/protobuf" },
    body: pbRecord([[Buffer.from("h"), Buffer.from([0x61, 0, 0xff])]], Buffer.from([0x78, 0, 0xfe])),
  });
  assert.equal(res.status, 200);
  await rawAppend("p4", Buffer.from("after"));

  const { records } = await client().readSessionStreamRecords(ext, "out");
  assert.deepEqual(
    records.map((r) => [r.seqNum, bytesOf(r.data).toString("hex"), r.id]),
    [
      [0, Buffer.from("before").toString("hex"), "p0"],
      [1, "610062", "nul"],
      [2, "fffe", "ff"],
      [3, "7800fe", ""],
      [4, Buffer.from("after").toString("hex"), "p4"],
    ],
  );
  assert.equal(bytesOf(records[3].headers[0][1]).toString("hex"), "6100ff");

  const chunks = [];
  const stream = await client().subscribeToSessionStream(ext, "out", { timeoutInSeconds: 1 });
  // a body that is not an envelope has no chunk for the SDK (it emits body.data): null here
  for await (const chunk of stream) chunks.push(chunk === undefined ? null : bytesOf(chunk).toString("hex"));
  assert.deepEqual(chunks, [
    Buffer.from("before").toString("hex"),
    "610062",
    "fffe",
    null,
    Buffer.from("after").toString("hex"),
  ]);
});
