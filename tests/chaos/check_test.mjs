// check_test.mjs - the checker can fail: histories made by hand, each holding one anomaly (or
// none), and what check.mjs must report of them. Prints TAP.
import { check } from './check.mjs';

let n = 0;
let failed = 0;
function ok(cond, desc) {
  n++;
  if (!cond) failed++;
  console.log(`${cond ? 'ok' : 'not ok'} ${n} - ${desc}`);
}
const count = (h) => Object.fromEntries(Object.entries(check(h).anomalies).map(([k, v]) => [k, v.length]));
const only = (h, kind, desc) => {
  const c = count(h);
  const others = Object.entries(c).filter(([k, v]) => k !== kind && v > 0);
  ok(c[kind] > 0 && others.length === 0, `${desc}: reports ${kind} and nothing else (${JSON.stringify(c)})`);
};

// a clean history: two appends to one stream, read back, a subscriber that saw both
let t = 0;
const at = () => (t += 10);
function base() {
  t = 0;
  return [
    { op: 'start', seed: 1, t: at() },
    { op: 'create', ph: 'invoke', ext: 'x', task: 'chaos-idle', t: at() },
    { op: 'attempt', of: 'create', id: 'x', attempt: 1, status: 200, t: at() },
    { op: 'create', ph: 'ok', ext: 'x', id: 'session_1', t: at() },
    { op: 'append', ph: 'invoke', ext: 'x', io: 'out', part: 'pa', t: at() },
    { op: 'attempt', of: 'append', id: 'pa', attempt: 1, status: 200, t: at() },
    { op: 'append', ph: 'ok', ext: 'x', io: 'out', part: 'pa', seq: 0, t: at() },
    { op: 'append', ph: 'invoke', ext: 'x', io: 'out', part: 'pb', t: at() },
    { op: 'attempt', of: 'append', id: 'pb', attempt: 1, status: 503, retry: 'true', t: at() },
    { op: 'attempt', of: 'append', id: 'pb', attempt: 2, status: 200, t: at() },
    { op: 'append', ph: 'ok', ext: 'x', io: 'out', part: 'pb', seq: 1, t: at() },
    { op: 'sse', ph: 'rec', sub: 0, ext: 'x', io: 'out', conn: 1, seq: 0, part: 'pa', t: at() },
    { op: 'sse', ph: 'rec', sub: 0, ext: 'x', io: 'out', conn: 2, seq: 1, part: 'pb', t: at() },
    { op: 'runs', ph: 'sample', rows: [['x', 'run_1', 'PENDING', 1]], t: at() },
    { op: 'stop', t: at() },
    { op: 'final', ph: 'ok', ext: 'x', io: 'out', recs: [[0, 'pa', null], [1, 'pb', null]], t: at() },
    { op: 'replica', pg: ['session_1\t\t0'], ch: ['session_1\t\t0'], t: at() },
  ];
}
const edit = (h, f) => { const c = structuredClone(h); f(c); return c; };
const find = (h, pred) => h.find(pred);

const clean = count(base());
ok(Object.values(clean).every((v) => v === 0), `a clean history has no anomaly (${JSON.stringify(clean)})`);

only(edit(base(), (h) => { find(h, (r) => r.op === 'final').recs = [[0, 'pa', null]]; }),
  'lost_append', 'an acknowledged append missing from its stream');
only(edit(base(), (h) => {
  find(h, (r) => r.op === 'final').recs = [[0, 'pb', null], [1, 'pa', null]];
  for (const r of h) if (r.op === 'sse') r.part = r.seq === 0 ? 'pb' : 'pa';
}), 'lost_append', 'an acknowledged append stored at another seq');
only(edit(base(), (h) => {
  find(h, (r) => r.op === 'final').recs.push([2, 'pb', null]);
}), 'duplicate', 'one part stored twice');

// a reorder: pb sent after pa was acknowledged, yet pb got the lower seq (both read back so)
only(edit(base(), (h) => {
  find(h, (r) => r.op === 'append' && r.ph === 'ok' && r.part === 'pa').seq = 1;
  find(h, (r) => r.op === 'append' && r.ph === 'ok' && r.part === 'pb').seq = 0;
  find(h, (r) => r.op === 'final').recs = [[0, 'pb', null], [1, 'pa', null]];
  for (const r of h) if (r.op === 'sse') r.part = r.seq === 0 ? 'pb' : 'pa';
}), 'order', 'a later append ordered before an acknowledged one');
only(edit(base(), (h) => { find(h, (r) => r.op === 'final').recs = [[1, 'pb', null], [0, 'pa', null]]; }),
  'order', 'seqs of a stream not increasing');

only(edit(base(), (h) => {
  h.splice(14, 0, { op: 'runs', ph: 'sample', t: 135, rows: [['x', 'run_1', 'EXECUTING', 1], ['x', 'run_2', 'EXECUTING', 0]] });
}), 'two_live_runs', 'a second run leased that never was current');
ok(count(edit(base(), (h) => {
  h.splice(14, 0, { op: 'runs', ph: 'sample', t: 135, rows: [['x', 'run_1', 'EXECUTING', 0], ['x', 'run_2', 'EXECUTING', 1]] });
})).two_live_runs === 0, 'a run swapped out (it was current before) still finishing is not two live runs');

only(edit(base(), (h) => { find(h, (r) => r.op === 'sse' && r.seq === 1).seq = 2; find(h, (r) => r.op === 'final').recs.push([2, 'pb2', null]); find(h, (r) => r.op === 'append' && r.ph === 'invoke' && r.part === 'pb').part = 'pb'; h.splice(4, 0, { op: 'append', ph: 'invoke', ext: 'x', io: 'out', part: 'pb2', t: 45 }); find(h, (r) => r.op === 'sse' && r.seq === 2).part = 'pb2'; }),
  'sse_gap', 'a subscriber that skipped a seq across a reconnect');
only(edit(base(), (h) => { h.splice(13, 0, { op: 'sse', ph: 'rec', sub: 0, ext: 'x', io: 'out', conn: 2, seq: 0, part: 'pa', t: 125 }); }),
  'sse_repeat', 'a subscriber that saw a seq again after a reconnect');
only(edit(base(), (h) => { find(h, (r) => r.op === 'sse' && r.seq === 1).part = 'pa'; }),
  'sse_mismatch', 'a subscriber that saw other content than the stream holds');

only(edit(base(), (h) => {
  h.splice(7, 0, { op: 'close', ph: 'ok', ext: 'x', t: 65 });
}), 'after_close', 'an append sent after the close was acknowledged, accepted');

only(edit(base(), (h) => { find(h, (r) => r.op === 'attempt' && r.status === 503).retry = null; }),
  'undocumented_error', 'a 503 without x-should-retry: true');
only(edit(base(), (h) => { find(h, (r) => r.op === 'attempt' && r.status === 503).status = 500; }),
  'undocumented_error', 'a 500');
only(edit(base(), (h) => {
  h.push({ op: 'append', ph: 'invoke', ext: 'x', io: 'in', part: 'pc', t: 300 });
  h.push({ op: 'append', ph: 'fail', ext: 'x', io: 'in', part: 'pc', status: 0, error: 'ECONNREFUSED', attempts: 10, t: 310 });
}), 'retries_exhausted', 'a client that gave up on a retryable error');
only(edit(base(), (h) => {
  find(h, (r) => r.op === 'create' && r.ph === 'invoke').task = 'echo';
  h.splice(5, 0, { op: 'append', ph: 'invoke', ext: 'x', io: 'in', part: 'pi', t: 51 });
  h.splice(6, 0, { op: 'append', ph: 'ok', ext: 'x', io: 'in', part: 'pi', seq: 0, t: 52 });
  h.push({ op: 'final', ph: 'ok', ext: 'x', io: 'in', recs: [[0, 'pi', null]], t: 400 });
}), 'echo_unanswered', 'an .in message of an echo session without a reply');
only(edit(base(), (h) => { find(h, (r) => r.op === 'replica').ch = ['session_1\tchaos\t1']; }),
  'replica_divergence', 'ClickHouse behind PostgreSQL');
only(edit(base(), (h) => { find(h, (r) => r.op === 'final').recs.push([2, 'pzz', null]); }),
  'phantom', 'a record nobody sent');
only(edit(base(), (h) => { const f = find(h, (r) => r.op === 'final'); f.ph = 'fail'; f.status = 503; }),
  'unverifiable', 'a stream whose final read failed');

console.log(`1..${n}`);
process.exit(failed ? 1 : 0);
