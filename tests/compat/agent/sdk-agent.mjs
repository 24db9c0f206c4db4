// sdk-agent.mjs - a worker written with the SDK: it takes runs of task "sdk-agent" from Tether's
// worker API (docs/workers.md) and, for each, streams model-style output to the session's .out
// with the SDK's own agent-side helpers: session.out.pipe for the reply's deltas, session.out.writer
// for a closing record, session.out.append for one more. Those are the SDK's streaming writer
// (S2 append sessions over HTTP/2, gateway/s2s.h). The reply is described by the payload:
// {chunks: N, delayMs: D, text: "..."}.
//
// Environment: TETHER_URL, TETHER_SECRET_KEY (the environment's key, for dequeue only; each run
// is executed with its own run token). Ends on SIGTERM after the run under way.
import { configure, sessions } from "@trigger.dev/sdk";

const url = process.env.TETHER_URL;
const key = process.env.TETHER_SECRET_KEY;
const workerId = `sdk-agent-${process.pid}`;
let stopping = false;
process.on("SIGTERM", () => {
  stopping = true;
});

async function call(path, token, body, timeoutMs = 40000) {
  const res = await fetch(`${url}${path}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : {};
}

async function* deltas(p) {
  for (let i = 0; i < p.chunks; i++) {
    if (p.delayMs) await new Promise((r) => setTimeout(r, p.delayMs));
    yield { type: "text-delta", index: i, delta: `${p.text ?? "token"}-${i} `, sentAt: Date.now() };
  }
}

async function execute(run) {
  // the run's own credential: it reaches this run and its session, nothing else
  configure({ baseURL: url, accessToken: run.token });
  await call(`/api/v1/runs/${run.id}/heartbeat`, run.token, { workerId });
  const p = run.payload ?? {};
  const out = sessions.open(run.sessionId).out;
  const piped = out.pipe(deltas(p));
  await piped.waitUntilComplete();
  const { waitUntilComplete } = out.writer({
    execute: ({ write }) => write({ type: "finish", chunks: p.chunks }),
  });
  await waitUntilComplete();
  await out.append({ type: "done" });
  await call(`/api/v1/runs/${run.id}/complete`, run.token, { workerId, output: { chunks: p.chunks } });
}

while (!stopping) {
  let runs;
  try {
    ({ runs } = await call("/api/v1/workers/dequeue", key, {
      taskIdentifiers: ["sdk-agent"],
      waitSeconds: 2,
      workerId,
    }));
  } catch (e) {
    console.error(`sdk-agent: dequeue: ${e.message}`);
    await new Promise((r) => setTimeout(r, 500));
    continue;
  }
  for (const run of runs) {
    try {
      await execute(run);
    } catch (e) {
      console.error(`sdk-agent: run ${run.id}: ${e.stack ?? e}`);
      await call(`/api/v1/runs/${run.id}/fail`, run.token, {
        workerId,
        error: { message: String(e.message ?? e) },
      }).catch(() => {});
    }
  }
}
