// The web page in a real browser: Debian's chromium, headless, driven by puppeteer-core. Pastes
// a paragraph into the Translate tab, clicks Translate, waits for the translation, checks it
// equals the API's answer for the same input, hovers a source segment and checks the matching
// translation segment is highlighted. With SCREENSHOT=FILE it saves a screenshot there; MODEL=DIR
// serves another translation model (docs/serve-page.png: MODEL=models/en-zh).
// Chat tab (the tiny Gemma, greedy): a two-turn chat whose streamed answers equal the API's
// one-shot answers for the same conversation, then the stop button ending a long streamed
// answer early (the server runs with --step-delay-ms so that a person, or puppeteer, can click
// Stop mid-answer). SCREENSHOT_CHAT=FILE saves the chat tab too.
"use strict";
const { need, startServer, assert, run, DATA } = require("./common.cjs");
const path = require("node:path");
const puppeteer = need("puppeteer-core");

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

run(async () => {
  const server = await startServer(["--model", "mt=" + (process.env.MODEL || path.join(DATA, "hf-tiny/marian-en-zh")),
                                    "--model", "lm=" + (process.env.LM || path.join(DATA, "hf-tiny/gemma")),
                                    "--step-delay-ms", "25"]);
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
    // ---- Chat: two turns, each streamed answer == the API's one-shot answer ----
    await page.click("#tab-chat");
    await page.waitForFunction(() => document.querySelector("#cmodel").options.length > 0);
    await page.$eval("#ctemp", e => { e.value = "0"; });
    await page.$eval("#cmax", e => { e.value = "12"; });
    const history = [];
    const oneShot = async msgs => (await (await fetch(server.url + "/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: "lm", messages: msgs, temperature: 0, max_tokens: 12 }),
    })).json()).choices[0].message.content;
    for (const [turn, question] of ["Translate to Chinese: Everyone has the right to education.", "And: Hello, world!"].entries()) {
      await page.type("#prompt", question);
      await page.click("#send");
      await page.waitForFunction(n => document.querySelectorAll("#history .msg.assistant").length === n &&
                                 document.querySelector("#cstatus").textContent.startsWith("done"), { timeout: 60000 }, turn + 1);
      history.push({ role: "user", content: question });
      const shown = await page.$$eval("#history .msg.assistant", es => es[es.length - 1].textContent);
      const want = await oneShot(history);
      assert(shown === want, `turn ${turn + 1}: page shows ${JSON.stringify(shown)}, API ${JSON.stringify(want)}`);
      history.push({ role: "assistant", content: shown });
    }
    const users = await page.$$eval("#history .msg.user", es => es.map(e => e.textContent));
    assert(users.length === 2, "two user turns in the history");
    if (process.env.SCREENSHOT_CHAT) await page.screenshot({ path: process.env.SCREENSHOT_CHAT });

    // ---- Stop button: a long answer (200 tokens at >= 25 ms a step) stopped after it started ----
    await page.click("#clear");
    await page.$eval("#cmax", e => { e.value = "200"; });
    await page.type("#prompt", "Tell me a long story.");
    await page.click("#send");
    await page.waitForFunction(() => { const m = document.querySelector("#history .msg.assistant"); return m && m.textContent.length > 0; },
                               { timeout: 60000 });
    await page.click("#stop");
    await page.waitForFunction(() => document.querySelector("#cstatus").textContent === "stopped", { timeout: 10000 });
    const partial = await page.$eval("#history .msg.assistant", e => e.textContent);
    const full = await (await fetch(server.url + "/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: "lm", messages: [{ role: "user", content: "Tell me a long story." }], temperature: 0, max_tokens: 200 }),
    })).json();
    assert(full.choices[0].message.content.startsWith(partial) && partial.length < full.choices[0].message.content.length,
           `stopped answer is a proper prefix of the full one (${partial.length} of ${full.choices[0].message.content.length} chars)`);
    assert(await page.$eval("#send", e => !e.disabled), "send is enabled again after stop");
    assert(external.length === 0, "requests outside the server: " + external);
    console.log("browser: translate tab (== API), segment hover, no external requests OK;",
                "chat: two streamed turns (== API), stop button OK");
  } finally {
    await browser.close();
    await server.stop();
  }
});
