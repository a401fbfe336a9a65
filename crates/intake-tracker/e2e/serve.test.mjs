// The tracker's page as a person meets it, run by crates/intake/tests/serve_page.rs against the real
// binary: a fresh `intake serve` shows an uploaded payload with no identity (local mode), and a
// standalone `intake tracker` asks for one, keeps it in the tab and then shows the payload.
//
// Environment: SERVE_TRACKER_URL, STANDALONE_TRACKER_URL, REQUEST_ID (the uploaded payload),
// IDENTITY (an x-rh-identity of the payload's org), INTAKE_TEST_CHROMIUM, ARTIFACTS (screenshots).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} must be set`);
  return value;
};
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
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  page.on("pageerror", (e) => { throw e; });
  return page;
}

test("a fresh serve's page lists the upload without any identity", async () => {
  const page = await newPage();
  const sent = [];
  page.on("request", (r) => { if (r.headers()["x-rh-identity"]) sent.push(r.url()); });
  await page.goto(env("SERVE_TRACKER_URL") + "/");
  await page.waitForSelector(`tr[data-request-id="${requestId}"]`);
  assert.ok(await page.locator("#identity-panel").isHidden(), "no identity is asked for");
  assert.deepEqual(sent, [], "the page sent no identity");
  await page.screenshot({ path: join(artifacts, "serve-tracker-list.png"), fullPage: true });
});

test("a standalone tracker asks for an identity, keeps it in the tab and shows the payload", async () => {
  const base = env("STANDALONE_TRACKER_URL");
  const page = await newPage();
  await page.goto(base + "/");
  await page.waitForSelector("#identity-panel:not([hidden])");
  assert.match(await page.textContent("#identity-reason"), /x-rh-identity/);
  await page.fill("#identity-input", "not an identity");
  await page.click("#identity-save");
  assert.match(await page.textContent("#identity-error"), /Not an x-rh-identity value/);
  await page.fill("#identity-input", env("IDENTITY"));
  await Promise.all([page.waitForNavigation(), page.click("#identity-save")]);
  await page.waitForSelector(`tr[data-request-id="${requestId}"]`);
  assert.ok(await page.locator("#identity-panel").isHidden());
  assert.equal(await page.evaluate(() => sessionStorage.getItem("intake.x-rh-identity")), env("IDENTITY"));
  // The timeline's live stream carries the identity too (EventSource cannot send headers).
  await page.click(`tr[data-request-id="${requestId}"] a`);
  await page.waitForSelector("#timeline li");
  await page.waitForSelector("#live.on");
  await page.screenshot({ path: join(artifacts, "standalone-tracker-timeline.png"), fullPage: true });
  // Another tab starts without it.
  const other = await newPage();
  await other.goto(base + "/");
  await other.waitForSelector("#identity-panel:not([hidden])");
});
