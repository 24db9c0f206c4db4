// check.mjs - the chaos suite's checker: reads a history written by workload.mjs (and the
// nemesis lines chaos.sh adds), prints the anomalies by kind and the load held, and exits 1 when
// there is any anomaly (0 otherwise, 100 on usage).
//
//   node check.mjs HISTORY [--json]
//
// The rules (docs/chaos.md has them with their reasons):
//   lost_append        an acknowledged append is missing from its stream after quiesce, or sits
//                      at another seq than the one acknowledged
//   duplicate          one X-Part-Id stored more than once in a stream
//   order              a stream's seqs not strictly increasing, or an append acknowledged before
//                      another was sent got the higher seq (real-time order)
//   phantom            a record whose part id no client ever sent
//   sse_gap, sse_repeat, sse_mismatch
//                      a subscriber, across its reconnects, skipped a seq, saw one twice, or saw
//                      other content at a seq than the stream holds
//   two_live_runs      a run held by a worker that never was its session's current run (a claim
//                      loser that got leased), sampled from PostgreSQL
//   after_close        an append sent after its session's close was acknowledged was accepted
//   undocumented_error an answer outside the documented set (2xx; 409; 429; 503/504 with
//                      x-should-retry: true; a connection cut by a dying gateway)
//   retries_exhausted  a client retrying as the SDK does still failed on a retryable error
//   echo_unanswered    an acknowledged .in message of an echo session with no reply on .out
//   replica_divergence ClickHouse's rows differ from PostgreSQL's after quiesce + the wait
//   unverifiable       the final read of a stream failed, so its rules could not be checked
import { readFileSync } from 'node:fs';

const KINDS = [
  'lost_append', 'duplicate', 'order', 'phantom', 'sse_gap', 'sse_repeat', 'sse_mismatch',
  'two_live_runs', 'after_close', 'undocumented_error', 'retries_exhausted', 'echo_unanswered',
  'replica_divergence', 'unverifiable',
];
const LEASED = new Set(['DEQUEUED', 'EXECUTING']);

// Which answers a client may see, per operation. status 0 = no answer (connection refused or cut,
// or the client's own timeout): what a client sees while a gateway process is killed.
function documented(a) {
  const s = a.status;
  if (s === 0 || (s >= 200 && s < 300)) return true;
  if ((s === 503 || s === 504) && a.retry === 'true') return true;
  if (s === 429) return true;
  if (s === 409 && (a.of === 'append' || a.of === 'eac')) return true;
  if (s === 400 && a.of === 'eac' && /closed session/.test(a.body ?? '')) return true;
  return false;
}
const retryableStatus = (s) => s === 0 || s === 408 || s === 429 || s >= 500;

export function check(lines) {
  const an = Object.fromEntries(KINDS.map((k) => [k, []]));
  const add = (kind, detail) => an[kind].push(detail);
  const stats = { ops: {}, statuses: {}, seconds: 0, nemesis: 0, sse: { records: 0, connects: 0 } };
  const key = (ext, io) => `${ext}/${io}`;

  const invokes = new Map(); // part -> invoke record
  const acks = new Map(); // part -> ok record
  const perStream = new Map(); // stream -> [{part, seq, tInv, tAck}]
  const finals = new Map(); // stream -> {ok, recs}
  const closes = new Map(); // ext -> t of the first close acknowledged
  const subs = new Map(); // sub -> [{stream, seq, part, conn}]
  const echo = new Set(); // ext of echo sessions
  const everCurrent = new Set();
  const samples = [];
  let replica = null;
  let start = null;
  let stop = null;

  for (const r of lines) {
    switch (r.op) {
      case 'start': start = r; break;
      case 'stop': stop = r.t; break;
      case 'nemesis': stats.nemesis++; break;
      case 'create':
        if (r.ph === 'invoke' && r.task && !/idle/.test(r.task)) echo.add(r.ext);
        break;
      case 'attempt': {
        const k = `${r.of} ${r.status}${r.error ? ` (${r.error})` : ''}`;
        stats.statuses[k] = (stats.statuses[k] ?? 0) + 1;
        if (!documented(r)) add('undocumented_error', `${r.of} ${r.id} attempt ${r.attempt}: ${r.status} ${r.body ?? ''}`.trim());
        break;
      }
      case 'append':
        if (r.ph === 'invoke') invokes.set(r.part, r);
        else if (r.ph === 'ok') {
          acks.set(r.part, r);
          const s = key(r.ext, r.io);
          if (!perStream.has(s)) perStream.set(s, []);
          perStream.get(s).push({ part: r.part, seq: r.seq, tInv: invokes.get(r.part)?.t ?? 0, tAck: r.t });
        }
        break;
      case 'close':
        if (r.ph === 'ok' && !closes.has(r.ext)) closes.set(r.ext, r.t);
        break;
      case 'sse':
        if (r.ph === 'connect') stats.sse.connects++;
        if (r.ph === 'rec') {
          stats.sse.records++;
          if (!subs.has(r.sub)) subs.set(r.sub, []);
          subs.get(r.sub).push(r);
        }
        break;
      case 'final':
        finals.set(key(r.ext, r.io), { ok: r.ph === 'ok', recs: r.recs ?? [], status: r.status });
        break;
      case 'runs':
        if (r.rows) {
          for (const [, run, , cur] of r.rows) if (cur) everCurrent.add(run);
          samples.push(r);
        }
        break;
      case 'claims':
        for (const [, run] of r.rows ?? []) everCurrent.add(run);
        break;
      case 'replica': replica = r; break;
      default: break;
    }
    const done = r.ph === 'ok' || r.ph === 'fail';
    if (done && r.op !== 'attempt') {
      const o = (stats.ops[r.op] ??= { ok: 0, fail: 0 });
      o[r.ph]++;
      if (r.ph === 'fail' && r.op !== 'runs' && r.op !== 'final' && retryableStatus(r.status ?? 0) && !r.closed)
        add('retries_exhausted', `${r.op} ${r.part ?? r.ext ?? ''}: ${r.status}${r.error ? ` ${r.error}` : ''} after ${r.attempts} attempts`);
    }
  }
  if (start && stop !== null) stats.seconds = (stop - (lines[0]?.t ?? 0)) / 1000;

  // ---- streams: every acknowledged append present once, at its seq, in real-time order
  for (const [s, f] of finals) {
    if (!f.ok) {
      add('unverifiable', `${s}: final read answered ${f.status}`);
      continue;
    }
    const at = new Map();
    let prev = -1;
    for (const [seq, part] of f.recs) {
      if (seq <= prev) add('order', `${s}: seq ${seq} after ${prev}`);
      prev = seq;
      if (!part) continue;
      const inv = invokes.get(part);
      // only the clients' own parts: the echo agent's replies (echo-N) are at-least-once by
      // design, with an id the SDK's reader de-duplicates
      if (inv && at.has(part)) add('duplicate', `${s}: part ${part} at seqs ${at.get(part)} and ${seq}`);
      else if (!at.has(part)) at.set(part, seq);
      if (!inv) {
        // the echo agent's replies (echo-N) and anything not ours
        if (part.startsWith('p')) add('phantom', `${s}: part ${part} at seq ${seq} was never sent`);
        continue;
      }
      const ext = s.slice(0, s.lastIndexOf('/'));
      const tc = closes.get(ext);
      if (tc !== undefined && inv.t > tc) add('after_close', `${s}: part ${part} sent at ${inv.t} ms, after the close acknowledged at ${tc} ms, is stored at seq ${seq}`);
    }
    for (const a of perStream.get(s) ?? []) {
      if (!at.has(a.part)) add('lost_append', `${s}: part ${a.part} acknowledged with seq ${a.seq} is missing`);
      else if (at.get(a.part) !== a.seq) add('lost_append', `${s}: part ${a.part} acknowledged with seq ${a.seq} is at seq ${at.get(a.part)}`);
    }
    // real-time order: no B sent after A's ack with seq(B) < seq(A)
    const xs = [...(perStream.get(s) ?? [])].sort((a, b) => b.seq - a.seq);
    let minAck = Infinity;
    let minPart = null;
    for (const b of xs) {
      if (b.tInv > minAck) add('order', `${s}: part ${b.part} (seq ${b.seq}) was sent at ${b.tInv} ms, after ${minPart} (higher seq) was acknowledged at ${minAck} ms`);
      if (b.tAck < minAck) { minAck = b.tAck; minPart = b.part; }
    }
  }
  for (const [s, list] of perStream) {
    if (!finals.has(s)) add('unverifiable', `${s}: ${list.length} acknowledged appends and no final read`);
  }
  for (const [part, a] of acks) {
    const tc = closes.get(a.ext);
    const inv = invokes.get(part);
    if (tc !== undefined && inv && inv.t > tc) add('after_close', `${a.ext}/${a.io}: part ${part} sent at ${inv.t} ms was acknowledged after the close at ${tc} ms`);
  }

  // ---- subscribers: consecutive seqs across reconnects, the stream's content at each
  for (const [sub, recs] of subs) {
    let prev = -1;
    for (const r of recs) {
      const s = key(r.ext, r.io);
      if (r.seq === prev) add('sse_repeat', `subscriber ${sub} on ${s}: seq ${r.seq} twice (connection ${r.conn})`);
      else if (r.seq < prev) add('sse_repeat', `subscriber ${sub} on ${s}: seq ${r.seq} after ${prev} (connection ${r.conn})`);
      else if (r.seq !== prev + 1) add('sse_gap', `subscriber ${sub} on ${s}: seq ${r.seq} after ${prev} (connection ${r.conn})`);
      prev = Math.max(prev, r.seq);
      const f = finals.get(s);
      if (f?.ok && r.part) {
        const rec = f.recs.find(([seq]) => seq === r.seq);
        if (rec && rec[1] !== r.part) add('sse_mismatch', `subscriber ${sub} on ${s}: seq ${r.seq} was ${r.part}, the stream holds ${rec[1]}`);
      }
    }
  }

  // ---- runs: a leased run must have been its session's current run at some point
  for (const smp of samples) {
    for (const [ext, run, status] of smp.rows) {
      if (LEASED.has(status) && !everCurrent.has(run))
        add('two_live_runs', `${ext}: run ${run} ${status} at ${smp.t} ms was never the session's current run`);
    }
  }

  // ---- the echo agent answered every acknowledged .in message
  for (const ext of echo) {
    const inAcks = perStream.get(key(ext, 'in')) ?? [];
    const f = finals.get(key(ext, 'out'));
    if (!inAcks.length) continue;
    if (!f?.ok) {
      add('unverifiable', `${ext}/out: no final read to check the echo replies against`);
      continue;
    }
    const texts = new Set(f.recs.map((x) => x[2]).filter((x) => x !== null));
    for (const a of inAcks) if (!texts.has(a.part)) add('echo_unanswered', `${ext}: .in part ${a.part} (seq ${a.seq}) has no reply`);
  }

  if (replica) {
    const pg = new Set(replica.pg);
    const ch = new Set(replica.ch);
    for (const r of pg) if (!ch.has(r)) add('replica_divergence', `PostgreSQL row not in ClickHouse: ${r}`);
    for (const r of ch) if (!pg.has(r)) add('replica_divergence', `ClickHouse row not in PostgreSQL: ${r}`);
  }
  return { anomalies: an, stats };
}

export function parse(text) {
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

export function report({ anomalies, stats }) {
  const lines = [];
  const total = KINDS.reduce((n, k) => n + anomalies[k].length, 0);
  lines.push('anomaly              count');
  for (const k of KINDS) lines.push(`${k.padEnd(20)} ${String(anomalies[k].length).padStart(5)}`);
  for (const k of KINDS) for (const d of anomalies[k].slice(0, 5)) lines.push(`  ${k}: ${d}`);
  lines.push('');
  lines.push(`load over ${stats.seconds.toFixed(1)} s, ${stats.nemesis} nemesis actions`);
  lines.push('operation   ok      fail    ok/s');
  for (const [op, o] of Object.entries(stats.ops).sort())
    lines.push(`${op.padEnd(11)} ${String(o.ok).padEnd(7)} ${String(o.fail).padEnd(7)} ${(o.ok / (stats.seconds || 1)).toFixed(1)}`);
  lines.push(`sse         ${stats.sse.records} records seen over ${stats.sse.connects} connections`);
  lines.push('answers seen (every attempt)');
  for (const [k, n] of Object.entries(stats.statuses).sort()) lines.push(`  ${k}: ${n}`);
  lines.push(`anomalies: ${total}`);
  return { text: lines.join('\n'), total };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: check.mjs HISTORY [--json]');
    process.exit(100);
  }
  const result = check(parse(readFileSync(file, 'utf8')));
  if (process.argv.includes('--json')) {
    console.log(JSON.stringify({ anomalies: Object.fromEntries(Object.entries(result.anomalies).map(([k, v]) => [k, v.length])), stats: result.stats }));
    process.exit(0);
  }
  const { text, total } = report(result);
  console.log(text);
  process.exit(total ? 1 : 0);
}
