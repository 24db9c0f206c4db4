// workload.mjs - the chaos suite's mixed load against one running tree, written as a history.
//
//   node workload.mjs --url URL[,URL...] --key SECRET --history FILE [--seconds 60] [--seed N]
//        [--writers 12] [--subscribers 6] [--sessions 16] [--pg URL] [--ch URL] [--ready FILE]
//        [--budget SECONDS]
//
// Several URLs (the nodes of a cluster, tests/cluster/) spread the requests: each attempt and each
// SSE connection goes to one picked at random, as a load balancer would send them.
// Bounded in count and time, loopback only. What it does, every step written to the history
// (one JSON object per line, `t` = milliseconds on the monotonic clock from the start):
//   - creates sessions (half served by the echo-agent's task, half by a task no worker runs),
//     retrying with the same externalId;
//   - writers append to `.in` and `.out` with a unique X-Part-Id each, retrying with the same id;
//   - subscribers follow one stream each over SSE and reconnect with Last-Event-ID;
//   - a drainer reads `/records` of random streams;
//   - a closer closes a few sessions late in the run and calls end-and-continue on others;
//   - a sampler reads the runs of every session from PostgreSQL each second (leased runs, the
//     current run), for the checker's "two live runs" rule.
// After the timed phase (and once the runner has healed the tree: it creates the --ready file
// when /healthz answers 200 again, see chaos.sh) it drains every stream in full, waits for
// the echo replies, and, with --ch, records the ClickHouse and PostgreSQL rows of its sessions.
//
// Clients retry as the SDK does (its API client: zod-fetch + retry): a network error, a 408,
// 429 or 5xx, unless `x-should-retry: false`; `x-should-retry: true` always; exponential backoff
// with jitter. The SDK's default is 3 attempts; chaos kills an actor every 2 s, so the budget
// here is 10 attempts within at most ~30 s (the same rule, a longer budget).
//
// --budget bounds the whole run (default --seconds + 240): past it no request is sent again,
// so a tree that never heals ends the run with failed reads (the checker's "unverifiable")
// rather than hours of retries. Each phase is logged to stderr with its time.
import { spawnSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { performance } from 'node:perf_hooks';

function args(argv) {
  const o = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    o[a.slice(2)] = argv[++i];
  }
  return o;
}

const A = args(process.argv.slice(2));
const URLS = (A.url ?? '').split(',').filter(Boolean);
const KEY = A.key;
if (!URLS.length || !KEY || !A.history) {
  console.error('usage: workload.mjs --url URL --key KEY --history FILE [--seconds N] [--seed N]');
  process.exit(100);
}
const SECONDS = Number(A.seconds ?? 60);
const SEED = Number(A.seed ?? Date.now() % 1e9);
const WRITERS = Number(A.writers ?? 12);
const SUBSCRIBERS = Number(A.subscribers ?? 6);
const NSESSIONS = Number(A.sessions ?? 16);
const ECHO_TASK = A['echo-task'] ?? 'echo';
const QUIET_TASK = 'chaos-idle';
const MAX_OPS = Number(A['max-ops'] ?? 200000); // a bound on the whole run, whatever its length
const BUDGET_MS = Number(A.budget ?? SECONDS + 240) * 1000;

// the node a request goes to: not seeded, so the workload's own choices stay those of the seed
const base = () => URLS[Math.floor(Math.random() * URLS.length)];

// ---- seeded randomness (mulberry32): the same seed makes the same choices
let rs = SEED >>> 0;
function rnd() {
  rs = (rs + 0x6d2b79f5) >>> 0;
  let t = rs;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (xs) => xs[Math.floor(rnd() * xs.length)];

// ---- history
const out = createWriteStream(A.history, { flags: 'w' });
const T0 = performance.now();
const now = () => Math.round((performance.now() - T0) * 1000) / 1000;
const appendsAcked = []; // the acknowledged appends, for waitEcho
function hist(rec) {
  rec.t = now();
  if (rec.op === 'append' && rec.ph === 'ok') appendsAcked.push(rec);
  out.write(JSON.stringify(rec) + '\n');
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const left = () => BUDGET_MS - now();
const phase = (what) => console.error(`workload: ${(now() / 1000).toFixed(1)} s: ${what}`);
let stopping = false;
let ops = 0;

// ---- HTTP with the SDK's retry rule
const RETRY_ATTEMPTS = Number(A.attempts ?? 10);
function retryable(status, headers) {
  const sr = headers?.get('x-should-retry');
  if (sr === 'true') return true;
  if (sr === 'false') return false;
  return status === 408 || status === 429 || status >= 500;
}
function backoff(attempt) {
  const base = Math.min(4000, 100 * 2 ** attempt);
  return base / 2 + rnd() * (base / 2);
}

// call(desc, method, path, {body, headers, timeoutMs}) -> {status, headers, text, attempts}
// Every attempt's outcome is written (op "attempt") so the checker can tally statuses and
// check that only documented errors reached the client.
async function call(desc, method, path, opt = {}) {
  let last;
  for (let attempt = 1; attempt <= RETRY_ATTEMPTS; attempt++) {
    if (left() <= 0) {
      last = { status: 0, headers: null, text: '', attempts: attempt - 1, error: 'budget' };
      hist({ op: 'attempt', of: desc.op, id: desc.id, attempt, status: 0, error: 'budget' });
      break;
    }
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), Math.min(opt.timeoutMs ?? 15000, left()));
    let status = 0;
    let headers = null;
    let text = '';
    let error = null;
    try {
      const res = await fetch(base() + path, {
        method,
        headers: {
          authorization: `Bearer ${KEY}`,
          'content-type': 'application/json',
          ...(opt.headers ?? {}),
        },
        body: opt.body,
        signal: ac.signal,
      });
      status = res.status;
      headers = res.headers;
      text = await res.text();
    } catch (e) {
      error = String(e?.cause?.code ?? e?.cause?.message ?? e?.name ?? e);
    } finally {
      clearTimeout(timer);
    }
    last = { status, headers, text, attempts: attempt, error };
    hist({
      op: 'attempt', of: desc.op, id: desc.id, attempt, status, error,
      retry: headers?.get('x-should-retry') ?? null,
      body: status >= 400 && status !== 409 ? text.slice(0, 300) : undefined,
    });
    if (error === null && !retryable(status, headers)) return last;
    if (attempt < RETRY_ATTEMPTS) await sleep(Math.min(backoff(attempt), Math.max(0, left())));
  }
  return last;
}

// ---- sessions
const sessions = []; // {ext, task, id, closed}
async function createSession(i) {
  const ext = `chaos-${SEED}-${i}`;
  const task = i % 2 === 0 ? ECHO_TASK : QUIET_TASK;
  const body = JSON.stringify({
    type: 'chat', externalId: ext, taskIdentifier: task,
    triggerConfig: { basePayload: {}, idleTimeoutInSeconds: 5, maxAttempts: 5 },
  });
  hist({ op: 'create', ph: 'invoke', ext, task });
  const r = await call({ op: 'create', id: ext }, 'POST', '/api/v1/sessions', { body });
  if (r.status === 200 || r.status === 201) {
    const j = JSON.parse(r.text);
    hist({ op: 'create', ph: 'ok', ext, task, id: j.id, status: r.status, attempts: r.attempts });
    sessions.push({ ext, task, id: j.id, closed: false, ioN: { in: 0, out: 0 } });
  } else {
    hist({ op: 'create', ph: 'fail', ext, status: r.status, error: r.error, attempts: r.attempts });
  }
}

// ---- appends
let partN = 0;
async function append(s, io) {
  const part = `p${SEED}-${partN++}`;
  // an .in body is the text the echo agent answers; .out bodies are opaque to everyone
  const payload = io === 'in' ? part : JSON.stringify({ chaos: part, n: partN });
  hist({ op: 'append', ph: 'invoke', ext: s.ext, io, part });
  const r = await call({ op: 'append', id: part }, 'POST',
    `/realtime/v1/sessions/${encodeURIComponent(s.ext)}/${io}/append`,
    { body: payload, headers: { 'x-part-id': part, 'content-type': 'text/plain' } });
  if (r.status === 200) {
    const j = JSON.parse(r.text);
    hist({ op: 'append', ph: 'ok', ext: s.ext, io, part, seq: j.seq, attempts: r.attempts });
  } else {
    hist({
      op: 'append', ph: 'fail', ext: s.ext, io, part, status: r.status, error: r.error,
      attempts: r.attempts, closed: r.status === 409,
    });
    if (r.status === 409) s.closed = true;
  }
}

async function writer(w) {
  while (!stopping && ops < MAX_OPS) {
    const live = sessions.filter((s) => !s.closed);
    if (live.length === 0) break;
    const s = pick(live);
    ops++;
    await append(s, rnd() < 0.5 ? 'in' : 'out');
    await sleep(rnd() * 40);
  }
}

// ---- SSE subscribers: follow one stream, reconnect with Last-Event-ID
async function subscriber(k) {
  const s = sessions[k % sessions.length];
  const io = k % 2 === 0 ? 'out' : 'in';
  let last = -1; // the last seq this subscriber saw
  let conn = 0;
  while (!stopping) {
    conn++;
    const ac = new AbortController();
    const stopTimer = setInterval(() => stopping && ac.abort(), 200);
    hist({ op: 'sse', ph: 'connect', sub: k, ext: s.ext, io, conn, from: last });
    let status = 0;
    let why = 'end';
    try {
      const res = await fetch(`${base()}/realtime/v1/sessions/${encodeURIComponent(s.ext)}/${io}`, {
        headers: {
          authorization: `Bearer ${KEY}`, accept: 'text/event-stream', 'timeout-seconds': '20',
          ...(last >= 0 ? { 'last-event-id': String(last) } : {}),
        },
        signal: ac.signal,
      });
      status = res.status;
      if (status !== 200) {
        hist({ op: 'sse', ph: 'status', sub: k, conn, status, retry: res.headers.get('x-should-retry') });
        await res.text().catch(() => {});
      } else {
        const dec = new TextDecoder();
        let buf = '';
        for await (const chunk of res.body) {
          buf += dec.decode(chunk, { stream: true });
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const frame = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let event = 'message';
            let data = '';
            for (const line of frame.split('\n')) {
              if (line.startsWith('event:')) event = line.slice(6).trim();
              else if (line.startsWith('data:')) data += line.slice(5).trimStart();
            }
            if (event !== 'batch') continue;
            const b = JSON.parse(data);
            for (const r of b.records ?? []) {
              let part = null;
              try { part = JSON.parse(r.body).id ?? null; } catch { /* not an envelope */ }
              hist({ op: 'sse', ph: 'rec', sub: k, ext: s.ext, io, conn, seq: r.seq_num, part });
              last = r.seq_num;
            }
          }
        }
      }
    } catch (e) {
      why = String(e?.cause?.code ?? e?.name ?? e);
    } finally {
      clearInterval(stopTimer);
    }
    hist({ op: 'sse', ph: 'disconnect', sub: k, conn, status, why, last });
    if (!stopping) await sleep(100 + rnd() * 400);
  }
}

// ---- /records reads while the load runs (a reader that polls)
async function readAll(s, io, after = -1) {
  const recs = [];
  for (;;) {
    const q = after >= 0 ? `?afterEventId=${after}` : '';
    const r = await call({ op: 'records', id: `${s.ext}/${io}` }, 'GET',
      `/realtime/v1/sessions/${encodeURIComponent(s.ext)}/${io}/records${q}`);
    if (r.status !== 200) return { ok: false, status: r.status, recs };
    const j = JSON.parse(r.text);
    if (!j.records.length) return { ok: true, recs };
    for (const rec of j.records) {
      recs.push({ seq: rec.seqNum, part: rec.id, data: rec.data });
      after = rec.seqNum;
    }
  }
}
async function drainer() {
  while (!stopping) {
    await sleep(500 + rnd() * 1000);
    if (!sessions.length) continue;
    const s = pick(sessions);
    const io = rnd() < 0.5 ? 'in' : 'out';
    const r = await readAll(s, io);
    hist({ op: 'drain', ph: r.ok ? 'ok' : 'fail', ext: s.ext, io, status: r.status, n: r.recs.length,
      recs: r.recs.map((x) => [x.seq, x.part]) });
  }
}

// ---- closes and end-and-continue
async function closer() {
  const closeAt = SECONDS * 1000 * 0.6;
  while (!stopping && now() < closeAt) await sleep(200);
  // close a quarter of the quiet sessions (their writers then see 409 and move on)
  const quiet = sessions.filter((s) => s.task === QUIET_TASK);
  for (const s of quiet.slice(0, Math.max(1, Math.floor(quiet.length / 4)))) {
    if (stopping) break;
    hist({ op: 'close', ph: 'invoke', ext: s.ext });
    const r = await call({ op: 'close', id: s.ext }, 'POST',
      `/api/v1/sessions/${encodeURIComponent(s.ext)}/close`, { body: '{"reason":"chaos"}' });
    hist({ op: 'close', ph: r.status === 200 ? 'ok' : 'fail', ext: s.ext, status: r.status, attempts: r.attempts });
    if (r.status === 200) s.closed = true;
    await sleep(300);
  }
  while (!stopping) {
    await sleep(1500 + rnd() * 1500);
    const s = pick(sessions.filter((x) => x.task === QUIET_TASK && !x.closed) || []);
    if (!s) continue;
    const g = await call({ op: 'get', id: s.ext }, 'GET', `/api/v1/sessions/${encodeURIComponent(s.ext)}`);
    if (g.status !== 200) {
      hist({ op: 'get', ph: 'fail', ext: s.ext, status: g.status });
      continue;
    }
    const run = JSON.parse(g.text).currentRunId;
    if (!run) continue;
    hist({ op: 'eac', ph: 'invoke', ext: s.ext, run });
    const r = await call({ op: 'eac', id: s.ext }, 'POST',
      `/api/v1/sessions/${encodeURIComponent(s.ext)}/end-and-continue`,
      { body: JSON.stringify({ callingRunId: run, reason: 'manual' }) });
    hist({ op: 'eac', ph: r.status === 200 ? 'ok' : 'fail', ext: s.ext, status: r.status, text: r.text.slice(0, 200) });
  }
}

// ---- the runs of our sessions, from PostgreSQL (the checker's "two live runs")
function psql(sql) {
  const r = spawnSync('psql', ['-X', '-At', '-v', 'ON_ERROR_STOP=1', '-d', A.pg, '-c', sql],
    { encoding: 'utf8', timeout: 5000 });
  return r.status === 0 ? r.stdout : null;
}
const RUNS_SQL = `SELECT s.external_id, r.friendly_id, r.status, (r.id = s.current_run_id)::int,
    coalesce(s.current_run_id, '')
  FROM sessions_bound s JOIN task_runs r ON r.session_id = s.id
  WHERE s.external_id LIKE 'chaos-${SEED}-%'
    AND (r.status IN ('DEQUEUED','EXECUTING') OR r.id = s.current_run_id
         OR r.status NOT IN ('CANCELED','INTERRUPTED','COMPLETED_SUCCESSFULLY',
                             'COMPLETED_WITH_ERRORS','SYSTEM_FAILURE','CRASHED','EXPIRED','TIMED_OUT'))`;
function sampleRuns(ph) {
  const o = psql(RUNS_SQL);
  if (o === null) return hist({ op: 'runs', ph: 'fail' });
  const rows = o.split('\n').filter(Boolean).map((l) => l.split('|'));
  hist({ op: 'runs', ph, rows: rows.map(([ext, run, status, cur]) => [ext, run, status, Number(cur)]) });
}
async function sampler() {
  if (!A.pg) return;
  while (!stopping) {
    sampleRuns('sample');
    await sleep(1000);
  }
}

// ---- the final phase
// PostgreSQL's and ClickHouse's view of our sessions after quiesce; ClickHouse is polled until
// it agrees or --ch-wait seconds pass (the replicator's lag), and both are written.
function chQuery(sql) {
  const r = spawnSync('curl', ['-s', '--max-time', '5', '--data-binary', sql, A.ch + '/'],
    { encoding: 'utf8', timeout: 8000 });
  return r.status === 0 ? r.stdout : null;
}
const rowsOf = (o) => (o ?? '').split('\n').filter(Boolean).sort();
async function compareClickHouse() {
  const pgSql = `SELECT friendly_id, coalesce(closed_reason, ''), (closed_at IS NOT NULL)::int
    FROM sessions WHERE external_id LIKE 'chaos-${SEED}-%'`;
  const chSql = `SELECT friendly_id, ifNull(closed_reason, ''), toUInt8(isNotNull(closed_at))
    FROM sessions_v1 FINAL WHERE _is_deleted = 0 AND external_id LIKE 'chaos-${SEED}-%'
    FORMAT TabSeparated`;
  const end = Math.min(now() + Number(A['ch-wait'] ?? 20) * 1000, BUDGET_MS);
  let pg = [];
  let ch = [];
  for (;;) {
    pg = rowsOf(psql(pgSql)?.replaceAll('|', '\t'));
    ch = rowsOf(chQuery(chSql));
    if (JSON.stringify(pg) === JSON.stringify(ch) || now() > end) break;
    await sleep(500);
  }
  hist({ op: 'replica', pg, ch });
}

async function finalPhase() {
  // every run of the sessions, ever current (session_runs) — the checker's ground truth
  if (A.pg) {
    const o = psql(`SELECT s.external_id, r.friendly_id FROM session_runs sr
      JOIN sessions s ON s.id = sr.session_id JOIN task_runs r ON r.id = sr.run_id
      WHERE s.external_id LIKE 'chaos-${SEED}-%'`);
    if (o !== null)
      hist({ op: 'claims', rows: o.split('\n').filter(Boolean).map((l) => l.split('|')) });
    sampleRuns('final');
  }
  for (const s of sessions) {
    for (const io of ['in', 'out']) {
      const r = await readAll(s, io);
      hist({ op: 'final', ph: r.ok ? 'ok' : 'fail', ext: s.ext, io, status: r.status,
        recs: r.recs.map((x) => [x.seq, x.part, typeof x.data === 'object' && x.data ? x.data.text ?? null : null]) });
    }
  }
  if (A.ch && A.pg) await compareClickHouse();
}

// the echo agent answers every .in record: wait (bounded) until every acknowledged .in part has a
// reply, reading .out again, so the checker sees the agent's final state
async function waitEcho(deadlineMs) {
  const acked = new Map(); // ext -> Set(part)
  for (const l of appendsAcked) if (l.io === 'in') {
    if (!acked.has(l.ext)) acked.set(l.ext, new Set());
    acked.get(l.ext).add(l.part);
  }
  const end = Math.min(now() + deadlineMs, BUDGET_MS);
  for (const s of sessions.filter((x) => x.task === ECHO_TASK)) {
    const want = acked.get(s.ext);
    if (!want) continue;
    while (now() < end) {
      const r = await readAll(s, 'out');
      const got = new Set(r.recs.map((x) => (x.data && typeof x.data === 'object' ? x.data.text : null)));
      if ([...want].every((p) => got.has(p))) break;
      await sleep(500);
    }
  }
}

async function main() {
  hist({ op: 'start', seed: SEED, seconds: SECONDS, writers: WRITERS, subscribers: SUBSCRIBERS, sessions: NSESSIONS });
  for (let i = 0; i < NSESSIONS; i++) await createSession(i);
  if (!sessions.length) {
    hist({ op: 'end', ok: false });
    out.end();
    console.error('workload: no session could be created');
    process.exit(1);
  }
  const tasks = [];
  for (let w = 0; w < WRITERS; w++) tasks.push(writer(w));
  for (let k = 0; k < SUBSCRIBERS; k++) tasks.push(subscriber(k));
  tasks.push(drainer(), closer(), sampler());
  phase(`${sessions.length} sessions; load for ${SECONDS} s`);
  await sleep(SECONDS * 1000);
  stopping = true;
  hist({ op: 'stop' });
  phase(`load stopped after ${ops} appends; waiting for the calls in flight`);
  await Promise.all(tasks);
  hist({ op: 'quiesce', ph: 'begin' });
  phase('calls done; waiting for the healed tree');
  // the runner stops its nemesis at the same time, heals the tree and, once /healthz says
  // 200, creates the --ready file; without one, this goes on at once
  if (A.ready) {
    const { existsSync } = await import('node:fs');
    const end = Math.min(now() + 120000, BUDGET_MS);
    while (!existsSync(A.ready) && now() < end) await sleep(200);
  }
  hist({ op: 'quiesce', ph: 'healthy' });
  phase('tree healed; waiting for the echo replies');
  await waitEcho(Number(A['echo-wait'] ?? 30) * 1000);
  phase('reading every stream');
  await finalPhase();
  phase(left() > 0 ? 'done' : 'done, past the budget: reads after it failed');
  hist({ op: 'end', ok: true, ops });
  await new Promise((r) => out.end(r));
  process.exit(0);
}

main().catch((e) => {
  console.error(`workload: ${e?.stack ?? e}`);
  process.exit(1);
});
