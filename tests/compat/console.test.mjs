// console.test.mjs - the console page (/console) in a real browser: Debian's headless Chromium,
// driven by playwright-core. Without a key the page shows nothing; a wrong key is refused; with
// the secret key it shows the process tree and the leader, finds a session with the list's
// filters, opens it with its run, shows a record appended to .in arrive live, and shows the bus
// tap with a filter (and never the key itself); signing out hides everything again. The screenshot of the open session is kept as a test artifact:
// $TETHER_ARTIFACTS_DIR/console.png and console-tap.png (default build/test-artifacts/).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { configure, sessions } from "@trigger.dev/sdk";
import { apiClientManager } from "@trigger.dev/core/v3";

const baseURL = process.env.TETHER_URL;
const key = process.env.TETHER_SECRET_KEY;
configure({ baseURL, accessToken: key });
const client = () => apiClientManager.clientOrThrow();
const here = dirname(fileURLToPath(import.meta.url));
const artifacts = process.env.TETHER_ARTIFACTS_DIR || resolve(here, "../../build/test-artifacts");
const ext = `console-${process.pid}-${Date.now()}`;
const marker = `hello from the console test ${process.pid}`;
let browser, page, sid;
const pageErrors = [];

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.TETHER_CHROMIUM || "/usr/bin/chromium",
    headless: true,
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  page.on("pageerror", (e) => pageErrors.push(e.message));
  const s = await sessions.start({
    type: "console.test",
    externalId: ext,
    taskIdentifier: "console-task",
    triggerConfig: { basePayload: {} },
    tags: ["console"],
  });
  sid = s.id;
});

after(async () => {
  await browser?.close();
});

test("without a key the console shows nothing but the sign-in form", async () => {
  const res = await page.goto(`${baseURL}/console`);
  assert.equal(res.status(), 200);
  assert.match(res.headers()["content-type"], /^text\/html/);
  assert.match(res.headers()["content-security-policy"], /frame-ancestors 'none'/);
  assert.equal(await page.locator("#signin-view").isVisible(), true);
  assert.equal(await page.locator("#app").isHidden(), true);
  assert.equal(await page.locator("#sessions tbody tr").count(), 0);
  assert.equal(await page.locator("#processes tbody tr").count(), 0);
});

test("a wrong key is refused and shows nothing", async () => {
  await page.fill("#key", "tr_dev_notakeyatall0000000");
  await page.click("#signin");
  await page.locator("#signin-error", { hasText: "not valid" }).waitFor({ timeout: 10000 });
  assert.equal(await page.locator("#app").isHidden(), true);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
});

test("signed in: the process tree, the leader and the session found by its filters", async () => {
  await page.fill("#key", key);
  await page.click("#signin");
  await page.locator('#processes tbody tr[data-name="session-manager"]').waitFor({ timeout: 10000 });
  assert.match(await page.locator("#leader").textContent(), /leader/);
  const sm = page.locator('#processes tbody tr[data-name="stream-broker"] td').nth(1);
  assert.equal(await sm.textContent(), "up");
  await page.fill("#f-external", ext);
  const row = page.locator(`#sessions tbody tr[data-id="${sid}"]`);
  // the list is ClickHouse's, merged with what PostgreSQL changed within the replication lag
  await page.click("#apply");
  await page.waitForTimeout(300);
  for (let i = 0; i < 20 && (await row.count()) === 0; i++) {
    await page.click("#apply");
    await page.waitForTimeout(500);
  }
  await row.waitFor({ timeout: 5000 });
  assert.equal(await page.locator("#sessions tbody tr").count(), 1);
  assert.match(await row.textContent(), /console\.test/);
});

test("a session opened: its facts, its run, and a record on .in arriving live", async () => {
  await page.click(`#sessions tbody tr[data-id="${sid}"]`);
  await page.locator("#session-id", { hasText: sid }).waitFor({ timeout: 10000 });
  assert.match(await page.locator("#session-facts").textContent(), new RegExp(ext));
  await page.locator("#tail-in-state", { hasText: "live" }).waitFor({ timeout: 10000 });
  assert.deepEqual(await client().appendToSessionStream(sid, "in", marker), { ok: true });
  await page.locator("#tail-in li", { hasText: marker }).waitFor({ timeout: 10000 });
  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, "console.png"), fullPage: true });
  assert.deepEqual(pageErrors, []);
});

test("the bus tap view: filtered at the source, live, secrets masked", async () => {
  await page.fill("#t-actor", "stream-broker");
  await page.fill("#t-session", ext);
  await page.click("#tap-start");
  await page.locator("#tap-state", { hasText: "live" }).waitFor({ timeout: 10000 });
  await page.waitForTimeout(1500); // the filter is registered and published within a second
  assert.deepEqual(await client().appendToSessionStream(sid, "in", `${marker} again`), { ok: true });
  await page.locator('#tap-lines li[data-type="stream.append"]').first().waitFor({ timeout: 10000 });
  await page.screenshot({ path: join(artifacts, "console-tap.png"), fullPage: true });
  const lines = await page.locator("#tap-lines li").allTextContents();
  assert.ok(lines.length > 0);
  for (const l of lines) assert.match(l, /stream-broker/);
  await page.click("#tap-stop");
  assert.equal(await page.locator("#tap-state").textContent(), "stopped");
  // a key crosses the bus (env.resolve_key) but never reaches the view
  await page.fill("#t-actor", "");
  await page.fill("#t-session", "");
  await page.fill("#t-type", "env.resolve_key");
  await page.click("#tap-start");
  await page.locator("#tap-state", { hasText: "live" }).waitFor({ timeout: 10000 });
  await page.waitForTimeout(1500);
  // a key no gateway has cached: it is resolved over the bus (and refused)
  const probe = `tr_dev_${Math.random().toString(36).slice(2, 12).padEnd(10, "0")}probe00000`.slice(0, 27);
  const res = await fetch(`${baseURL}/api/v1/auth/whoami`, { headers: { Authorization: `Bearer ${probe}` } });
  assert.equal(res.status, 401);
  await page.locator('#tap-lines li[data-type="env.resolve_key"]').first().waitFor({ timeout: 10000 });
  const text = (await page.locator("#tap-lines").textContent()) || "";
  assert.ok(!text.includes(probe), "a key shows in the tap view");
  assert.ok(!text.includes(key), "the secret key shows in the tap view");
  assert.match(text, /\*\*\*\*/);
  await page.click("#tap-stop");
  assert.deepEqual(pageErrors, []);
});

test("signing out hides everything and forgets the key", async () => {
  await page.click("#signout");
  assert.equal(await page.locator("#app").isHidden(), true);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  assert.equal(await page.locator("#sessions tbody tr").count(), 0);
  await page.reload();
  assert.equal(await page.locator("#app").isHidden(), true);
});
