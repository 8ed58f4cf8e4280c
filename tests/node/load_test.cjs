// Bounded loopback load test: CLIENTS concurrent clients send REQUESTS translation requests
// each (default 32 x 50), in three rounds; asserts zero errors and that the server's RSS stops
// growing (the last round adds less than 5% + 16 MiB over the first round's peak).
"use strict";
const { startServer, rssKiB, assert, run, DATA } = require("./common.cjs");
const path = require("node:path");

const CLIENTS = Number(process.env.CLIENTS || 32), REQUESTS = Number(process.env.REQUESTS || 50);
const texts = ["Hello world.", "Where is the station?", "The cat sat on the mat. It was happy.",
               "I like green tea.", "**Bold** and `code` in one line."];

run(async () => {
  const server = await startServer(["--model", "mt=" + path.join(DATA, "hf-tiny/marian-en-zh"),
                                    "--max-queued", String(CLIENTS * 2)]);
  try {
    const rss = [];
    let errors = 0, done = 0;
    const perRound = Math.ceil(REQUESTS / 3);
    for (let round = 0; round < 3; round++) {
      await Promise.all(Array.from({ length: CLIENTS }, async (_, c) => {
        for (let i = 0; i < perRound && round * perRound + i < REQUESTS; i++) {
          const input = texts[(c + i) % texts.length];
          const r = await fetch(server.url + "/v1/translations", {
            method: "POST", headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ model: "mt", input, beam_size: 1 }),
          });
          const j = await r.json();
          if (r.status !== 200 || !j.data || typeof j.data[0].translation !== "string") {
            errors++;
            if (errors < 5) console.error(r.status, JSON.stringify(j));
          }
          done++;
        }
      }));
      rss.push(rssKiB(server.pid));
      console.log(`round ${round + 1}: ${done} requests, ${errors} errors, server RSS ${(rss[round] / 1024).toFixed(1)} MiB`);
    }
    assert(done === CLIENTS * REQUESTS, `sent ${done} of ${CLIENTS * REQUESTS}`);
    assert(errors === 0, `${errors} errors`);
    assert(rss[2] <= rss[0] * 1.05 + 16 * 1024, `RSS grew: ${rss.join(" -> ")} KiB`);
  } finally {
    await server.stop();
  }
});
