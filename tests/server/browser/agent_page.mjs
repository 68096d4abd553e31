// herd's web chat page with an agent, in headless Debian chromium driven by
// playwright-core: the page lists the shop-support agent, sends "where is my
// order 1042?" (English, then German in a new chat), shows the lookup_order
// step with the database row above the answer, and the answer names the
// order's real status (the status in the row, as the corpus words it).
//
//   node tests/server/browser/agent_page.mjs [path/to/herd]   (default target/debug/herd)
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { serve } from "./serve.mjs";

const herd = process.argv[2] || process.env.HERD_BIN || "target/debug/herd";
const tmp = mkdtempSync(join(tmpdir(), "herd-agent-page-"));
const dir = join(tmp, "support");
execFileSync(herd, ["agent", "new", "--template", "shop-support", dir]);
const { server, base } = await serve(herd, ["--agents", dir]);

// How the corpus words each status (herd-shop's phrasebook keywords).
const WORDS = {
  processing: ["processing", "in Bearbeitung"], shipped: ["shipped", "versandt"],
  delivered: ["delivered", "zugestellt"], cancelled: ["cancelled", "storniert"],
  returned: ["returned", "zurückgeschickt"],
};

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
const failures = [];
try {
  const page = await browser.newPage();
  await page.goto(base + "/");
  await page.waitForSelector("#model option[value=shop-support]", { state: "attached" });
  await page.selectOption("#model", "shop-support");
  for (const [question, german] of [["where is my order 1042?", 0], ["Wo ist meine Bestellung 1042?", 1]]) {
    await page.click("#clear");
    await page.fill("#input", question);
    await page.press("#input", "Enter");
    await page.waitForSelector(".assistant[data-done=true]", { timeout: 120000 });
    const steps = await page.$$eval(".step", (els) => els.map((e) => e.textContent));
    const answer = await page.$eval(".assistant", (e) => e.textContent);
    console.log(`${question} -> ${JSON.stringify(steps)} -> ${JSON.stringify(answer)}`);
    const first = steps[0] || "";
    if (!first.startsWith('tool lookup_order({"order_id":1042}) → ok: ')) {
      failures.push(`${question}: no valid lookup_order(1042) step: ${JSON.stringify(steps)}`);
      continue;
    }
    const row = JSON.parse(first.slice(first.indexOf(": ") + 2));
    assert.equal(row.order_id, 1042);
    const word = WORDS[row.status][german];
    if (!answer.includes(word)) failures.push(`${question}: answer ${JSON.stringify(answer)} lacks the status ${word}`);
  }
  // The page keeps the conversation: a follow-up continues it on the server.
  await page.fill("#input", "thanks!");
  await page.press("#input", "Enter");
  await page.waitForFunction(() => document.querySelectorAll(".assistant[data-done=true]").length === 2, null, { timeout: 120000 });
  assert.equal(await page.$$eval(".user", (els) => els.length), 2);
} finally {
  await browser.close();
  server.kill();
  rmSync(tmp, { recursive: true, force: true });
}
assert.deepEqual(failures, []);
console.log("agent page: ok");
