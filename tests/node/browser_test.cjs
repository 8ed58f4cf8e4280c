// The web page in a real browser: Debian's chromium, headless, driven by puppeteer-core. Pastes
// a paragraph into the Translate tab, clicks Translate, waits for the translation, checks it
// equals the API's answer for the same input, hovers a source segment and checks the matching
// translation segment is highlighted. With SCREENSHOT=FILE it saves a screenshot there; MODEL=DIR
// serves another translation model (docs/serve-page.png: MODEL=models/en-zh).
// The Chat tab needs a decoder LLM, which this build does not serve yet: the test checks the
// tab says so.
"use strict";
const { need, startServer, assert, run, DATA } = require("./common.cjs");
const path = require("node:path");
const puppeteer = need("puppeteer-core");

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

run(async () => {
  const server = await startServer(["--model", "mt=" + (process.env.MODEL || path.join(DATA, "hf-tiny/marian-en-zh"))]);
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM, headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
  });
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1100, height: 720 });
    const external = [];
    page.on("request", r => { if (!r.url().startsWith(server.url)) external.push(r.url()); });
    await page.goto(server.url + "/", { waitUntil: "networkidle0" });
    await page.waitForFunction(() => document.querySelector("#tmodel").options.length > 0);
    const text = "The weather is nice today. Let us go for a walk in the park!\n\nWe will be back at noon.";
    await page.type("#source", text);
    await page.click("#go");
    await page.waitForFunction(() => document.querySelector("#status").textContent.startsWith("done"), { timeout: 60000 });
    const shown = await page.$eval("#tgtview", e => e.textContent);
    const api = await (await fetch(server.url + "/v1/translations", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: "mt", input: text, format: "markdown" }),
    })).json();
    assert(shown === api.data[0].translation, `page shows ${JSON.stringify(shown)}, API ${JSON.stringify(api.data[0].translation)}`);
    assert(await page.$eval("#srcview", e => e.textContent) === text, "source pane shows the input");
    const segs = await page.$$("#srcview .seg.t");
    assert(segs.length === 3, "3 translated segments, got " + segs.length);
    const want = await segs[1].evaluate(e => e.dataset.seg);
    await segs[1].hover();
    const lit = await page.$$eval("#tgtview .seg.hl", es => es.map(e => e.dataset.seg));
    assert(lit.length === 1 && lit[0] === want, `hover on segment ${want} highlights ${lit} in the translation`);
    const litText = await page.$eval("#tgtview .seg.hl", e => e.textContent);
    assert(litText === api.data[0].segments[Number(want)].translation, "the highlighted text is that segment's translation");
    assert(external.length === 0, "requests outside the server: " + external);
    if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT });
    await page.click("#tab-chat");
    const note = await page.$eval("#cstatus", e => e.textContent);
    assert(/no chat model/.test(note), "chat tab explains that no chat model is loaded: " + note);
    console.log("browser: translate tab (== API), segment hover, no external requests OK; chat: no LLM served yet");
  } finally {
    await browser.close();
    await server.stop();
  }
});
