// herd's web chat page in headless Debian chromium, driven by playwright-core:
// the page lists the model, streams an answer into the conversation, renders
// markdown, and its stop button aborts a long answer (the server frees the
// request's KV blocks).
//
//   node tests/server/browser/chat_page.mjs [path/to/herd]   (default target/debug/herd)
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { serve } from "./serve.mjs";

const herd = process.argv[2] || process.env.HERD_BIN || "target/debug/herd";
// The random-weight fixture, not the embedded teacher: it writes until its token
// budget, which the stop-button check needs (the teacher answers in a sentence).
const { server, base } = await serve(herd, ["--model", "tests/fixtures/models/llama32-tied", "--served-model-name", "herd-embedded"]);

async function kvBlocksUsed() {
  const text = await (await fetch(base + "/metrics")).text();
  return Number(text.match(/^herd_kv_blocks_used (\d+)/m)[1]);
}

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const page = await browser.newPage();
  await page.goto(base + "/");
  await page.waitForSelector("#model option", { state: "attached" });
  assert.equal(await page.inputValue("#model"), "herd-embedded");

  // A streamed answer: the assistant bubble grows before it is done. The
  // tiny model answers faster than a browser reads, so the network is
  // throttled to make the stream's pieces arrive apart.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.enable");
  await cdp.send("Network.emulateNetworkConditions", {
    offline: false, latency: 0, downloadThroughput: 20000, uploadThroughput: -1,
  });
  await page.fill("#max-tokens", "100");
  await page.fill("#temperature", "0"); // greedy: these prompts never end early
  await page.evaluate(() => {
    window.lengths = new Set();
    new MutationObserver(() => {
      const bubble = document.querySelector(".assistant");
      if (bubble && bubble.dataset.done !== "true") window.lengths.add(bubble.textContent.length);
    }).observe(document.getElementById("log"), { subtree: true, childList: true, characterData: true });
  });
  await page.fill("#input", "Hello there, tell me a story.");
  await page.press("#input", "Enter");
  await page.waitForSelector(".assistant[data-done=true]", { timeout: 60000 });
  const answer = await page.$eval(".assistant", (e) => ({ text: e.textContent, error: e.classList.contains("error") }));
  assert.equal(answer.error, false, answer.text);
  assert.ok(answer.text.length > 0, "the answer is empty");
  const partial = await page.evaluate(() => [...window.lengths].filter((n) => n > 0));
  assert.ok(partial.length >= 2, `expected the answer to grow while streaming, saw lengths ${partial}`);
  assert.equal(await page.textContent(".user"), "Hello there, tell me a story.");
  await cdp.send("Network.emulateNetworkConditions", {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1,
  });

  // Markdown is rendered by the page's own renderer, HTML escaped.
  const html = await page.evaluate(() => renderMarkdown("# Title\n**bold** and `x<y`\n- one\n- two\n```\na < b\n```"));
  for (const part of ["<h1>Title</h1>", "<strong>bold</strong>", "<code>x&lt;y</code>", "<ul><li>one</li><li>two</li></ul>", "<pre><code>a &lt; b</code></pre>"]) {
    assert.ok(html.includes(part), `${part} missing from ${html}`);
  }

  // The stop button aborts an answer; the server frees its KV blocks. A
  // background request keeps the engine busy so the answer cannot finish
  // before the click. (That an abandoned request stops generating is
  // measured in tests/server/test_openai_api.py.)
  const load = new AbortController();
  const loadBody = { model: "herd-embedded", stream: true, n: 16, max_tokens: 900, temperature: 0,
                     messages: [{ role: "user", content: "Keep the engine busy." }] };
  const loadResponse = await fetch(base + "/v1/chat/completions", { method: "POST", body: JSON.stringify(loadBody), signal: load.signal });
  const reading = (async () => {
    const reader = loadResponse.body.getReader();
    try {
      while (!(await reader.read()).done);
    } catch {}
  })();
  await page.click("#clear");
  await page.fill("#max-tokens", "900");
  await page.fill("#input", "Now a very long one.");
  await page.press("#input", "Enter");
  await page.click("#stop");
  await page.waitForSelector(".assistant[data-done=true]", { timeout: 10000 });
  assert.equal(await page.isDisabled("#stop"), true);
  assert.equal(await page.isEnabled("#send"), true);
  load.abort();
  await reading;
  let used = await kvBlocksUsed();
  for (let i = 0; i < 100 && used > 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
    used = await kvBlocksUsed();
  }
  assert.equal(used, 0, "KV blocks still held after stop");
  const aborted = await page.$eval(".assistant", (e) => ({ text: e.textContent, error: e.classList.contains("error") }));
  assert.equal(aborted.error, false, aborted.text);
  console.log("chat page: streamed answer, markdown, stop button: ok");
} finally {
  await browser.close();
  server.kill();
}
