// The tracker's web page in a real browser: search a payload, see its timeline and durations, and see
// a new status arrive live. Run by tests/browser.rs, which starts the tracker and publishes statuses.
//
// Environment: TRACKER_URL, REQUEST_ID (a payload with 3 statuses), INVENTORY_ID (of another
// payload), INTAKE_TEST_CHROMIUM (the browser), SIGNAL_DIR (where "ready" is written when the
// timeline is open, after which the test harness publishes a fourth status whose message is
// LIVE_MESSAGE), ARTIFACTS (screenshots).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} must be set`);
  return value;
};
const url = env("TRACKER_URL");
const requestId = env("REQUEST_ID");
const artifacts = env("ARTIFACTS");
mkdirSync(artifacts, { recursive: true });

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: env("INTAKE_TEST_CHROMIUM"),
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
  });
});
after(async () => { await browser?.close(); });

async function newPage() {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 }, locale: "en-US" });
  const external = [];
  page.on("request", (r) => { if (!r.url().startsWith(url)) external.push(r.url()); });
  page.on("pageerror", (e) => { throw e; });
  return { page, external };
}

/** The query strings of the page's calls to the payload list, in order. */
function listCalls(page) {
  const calls = [];
  page.on("request", (r) => {
    const u = new URL(r.url());
    if (u.pathname === "/api/v1/payloads") calls.push(u.searchParams);
  });
  return calls;
}

test("the list shows payloads and finds one by inventory id", async () => {
  const { page, external } = await newPage();
  const calls = listCalls(page);
  await page.goto(url + "/");
  await page.waitForSelector(`tr[data-request-id="${requestId}"]`);
  // The unfiltered first view asks for an estimate and says it is one (6 payloads, ids 1 … 6).
  assert.equal(calls[0].get("count"), "estimate");
  assert.equal(await page.textContent("#count"), "about 6 payloads");
  assert.equal(await page.getAttribute("#count", "data-exact"), "false");
  assert.match(await page.getAttribute("#count", "title"), /estimated/);
  await page.fill("#search", env("INVENTORY_ID"));
  await page.press("#search", "Enter");
  await page.waitForURL(/inventory_id=/);
  await page.waitForFunction(() => document.querySelectorAll("#payload-rows tr[data-request-id]").length === 1);
  // A filtered view counts exactly.
  const filtered = calls[calls.length - 1];
  assert.equal(filtered.get("inventory_id"), env("INVENTORY_ID"));
  assert.equal(filtered.get("count"), null);
  assert.equal(await page.textContent("#count"), "1 payload");
  assert.equal(await page.getAttribute("#count", "data-exact"), "true");
  await page.screenshot({ path: join(artifacts, "tracker-list.png"), fullPage: true });
  assert.deepEqual(external, [], "the page fetches nothing outside the tracker");
});

test("an estimate of millions reads as one, and paging follows the cursor", async () => {
  const { page, external } = await newPage();
  // The tracker's own answer with the count of a large store put in.
  await page.route((u) => u.pathname === "/api/v1/payloads", async (route) => {
    const response = await route.fetch();
    const body = await response.json();
    if (body.count_exact === false) body.count = 2_034_567;
    await route.fulfill({ response, json: body });
  });
  await page.goto(url + "/");
  await page.waitForSelector(`tr[data-request-id="${requestId}"]`);
  assert.equal(await page.textContent("#count"), "about 2.0 M payloads");
  assert.match(await page.getAttribute("#count", "title"), /2,034,567/);
  assert.equal(await page.textContent("#page-label"), "Page 1 of about 81,383");
  assert.equal(await page.isDisabled("#next"), true, "six payloads fit one page: no next_cursor");
  await page.screenshot({ path: join(artifacts, "tracker-list-estimate.png"), fullPage: true });
  // A time range is a filter: the count is exact again.
  await page.click('#picks button[data-range="7d"]');
  await page.waitForURL(/range=7d/);
  await page.waitForFunction(() => document.querySelector("#count").dataset.exact === "true");
  assert.equal(await page.textContent("#count"), "6 payloads");
  assert.equal(await page.textContent("#page-label"), "Page 1 of 1");
  assert.deepEqual(external, [], "the page fetches nothing outside the tracker");
});

test("search a payload, see its timeline, see a live status arrive", async () => {
  const { page, external } = await newPage();
  await page.goto(url + "/");
  await page.fill("#search", requestId);
  await page.click("#search-form button");
  await page.waitForURL(/\/track\?request_id=/);
  await page.waitForSelector("#timeline li");
  assert.equal(await page.locator("#timeline li").count(), 3);
  assert.equal(await page.textContent("#track-id"), requestId);
  assert.ok(await page.locator("#chart .track").count() >= 2, "one bar per service:source");
  assert.equal(await page.locator("#timeline li.bad").count(), 1, "the error row is highlighted");
  await page.waitForSelector("#live.on");
  writeFileSync(join(env("SIGNAL_DIR"), "ready"), "ready");
  const live = env("LIVE_MESSAGE");
  await page.waitForFunction((msg) => [...document.querySelectorAll("#timeline li")].some((li) => li.textContent.includes(msg)),
    live, { timeout: 15000 });
  assert.equal(await page.locator("#timeline li").count(), 4);
  assert.match(await page.textContent("#timeline li:first-child"), new RegExp(live));
  await page.screenshot({ path: join(artifacts, "tracker-timeline.png"), fullPage: true });
  assert.deepEqual(external, [], "the page fetches nothing outside the tracker");
});

test("an unknown id says not found", async () => {
  const { page } = await newPage();
  await page.goto(url + "/track?request_id=doesnotexist0000");
  await page.waitForSelector("#not-found:not([hidden])");
  assert.match(await page.textContent("#not-found"), /not found/);
});
