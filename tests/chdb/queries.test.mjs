// queries.test.mjs - Tether's ClickHouse SQL on a current ClickHouse engine (chDB embeds one)
// and, when TETHER_CH_URL is set, on the test server (Debian's 18.16) with the same
// expectations: the DDL of sql/clickhouse/*.sql as it is, then the INSERT, rows and
// session.list queries the clickhouse-replicator itself makes (printed by
// tests/drivers/chr_sql_driver.c from setup.c, pgo.c and list.c: no copy of them here).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Session } from 'chdb';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const DRIVER = process.env.CHR_SQL_DRIVER;
assert.ok(DRIVER, 'CHR_SQL_DRIVER: the path of chr_sql_driver (tests/chdb/run.sh sets it)');

// the driver's records: "=== KIND NAME" then the text
const records = {};
for (const part of execFileSync(DRIVER, { encoding: 'utf8' }).split(/^=== /m).filter(Boolean)) {
  const nl = part.indexOf('\n');
  records[part.slice(0, nl)] = part.slice(nl + 1);
}
const ddl = readdirSync(join(ROOT, 'sql', 'clickhouse')).filter((f) => f.endsWith('.sql')).sort()
  .flatMap((f) => readFileSync(join(ROOT, 'sql', 'clickhouse', f), 'utf8')
    .replace(/^--.*$/gm, '').split(';').map((s) => s.trim()).filter(Boolean)
    .map((sql) => ({ file: f, sql })));

// session.list results of the driver's fixture (see chr_sql_driver.c): ca closed (its newer
// version), cb active (expires 2099), cc expired, cd deleted; ids descending unless "before".
const expected = {
  all: ['cc', 'cb', 'ca'],
  every_filter: ['cb', 'ca'],
  active: ['cb'],
  closed: ['ca'],
  expired: ['cc'],
  tag_with_space: ['ca'],
  external_id_quoted: [],
  external_id: ['cc'],
  after_cc_size_1: ['cb', 'ca'],
  before_ca_size_1: ['cb', 'cc'],
};

function run(name, exec) {
  test(`${name}: the DDL applies (twice: it is re-applied at every start)`, async () => {
    for (let i = 0; i < 2; i++) for (const d of ddl) await exec(d.sql);
  });
  test(`${name}: the replicator's INSERT and rows`, async () => {
    await exec(records['insert sql'].trim(), records['rows fixture']);
    const got = (await exec('SELECT session_id, _version, _is_deleted, arrayStringConcat(tags, \'|\'), ' +
      'toUnixTimestamp(created_at), created_at_ms, metadata FROM sessions_v1 FINAL ORDER BY session_id ' +
      'FORMAT TabSeparatedRaw')).trim().split('\n');
    assert.equal(got.length, 4);
    assert.equal(got[0], 'ca\t200\t0\tuser:1|plan pro\t1767261600\t1767261600100\t{"data":{"k": "it\'s \\"quoted\\""}}');
    assert.match(got[3], /^cd\t180\t1\t/);
  });
  for (const [k, want] of Object.entries(expected)) {
    test(`${name}: session.list query "${k}"`, async () => {
      const sql = records[`list ${k}`];
      assert.ok(sql, `the driver printed list ${k}`);
      const out = (await exec(sql.trim())).split('\n').filter(Boolean);
      assert.deepEqual(out, want);
    });
  }
}

const dir = mkdtempSync(join(tmpdir(), 'tether-chdb-'));
const s = new Session(dir);
test.after(() => { s.cleanup(); rmSync(dir, { recursive: true, force: true }); });
test('chDB runs a current ClickHouse', () => {
  const v = s.query('SELECT version()', 'TabSeparated').trim();
  console.log(`# chDB ClickHouse ${v}`);
  assert.ok(Number(v.split('.')[0]) >= 24, v);
});
run('current ClickHouse (chDB)', async (sql, data) => s.query(data ? `${sql}\n${data}` : sql, 'TabSeparated'));

const CH = process.env.TETHER_CH_URL;
if (CH) {
  const db = `tether_dialect_${process.pid}`;
  const http = async (sql, data, database = db) => {
    const url = new URL(CH.endsWith('/') ? CH : `${CH}/`);
    if (database) url.searchParams.set('database', database);
    let body = sql;
    if (data) { url.searchParams.set('query', sql); body = data; }
    const r = await fetch(url, { method: 'POST', body });
    const t = await r.text();
    if (!r.ok) throw new Error(`ClickHouse ${r.status}: ${t}`);
    return t;
  };
  test('the test server (TETHER_CH_URL): a database of its own', async () => {
    console.log(`# server ClickHouse ${(await http('SELECT version()', null, null)).trim()}`);
    await http(`CREATE DATABASE ${db}`, null, null);
  });
  run('test server', http);
  test('the test server: its database dropped', async () => { await http(`DROP DATABASE ${db}`, null, null); });
}
