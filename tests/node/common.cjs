// Shared by the node client tests: starts `loom serve` on a free loopback port and loads the
// pinned npm packages from the directory tests/node/setup.sh installed them into.
"use strict";
const { spawn } = require("node:child_process");
const path = require("node:path");
const fs = require("node:fs");

const LOOM = process.env.LOOM_BINARY;
const DATA = process.env.LOOM_TEST_DATA;
const MODULES = process.env.LOOM_NODE_MODULES;
if (!LOOM || !DATA || !MODULES) throw new Error("set LOOM_BINARY, LOOM_TEST_DATA and LOOM_NODE_MODULES");

/** require() of a package installed under LOOM_NODE_MODULES. */
function need(name) { return require(path.join(MODULES, "node_modules", name)); }

/** Starts `loom serve ARGS --port 0`; resolves {url, port, pid, stop()} once it listens. */
function startServer(args) {
  return new Promise((resolve, reject) => {
    const proc = spawn(LOOM, ["serve", ...args, "--port", "0"], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    const timer = setTimeout(() => { proc.kill("SIGKILL"); reject(new Error("server did not start:\n" + err)); }, 120000);
    proc.stderr.on("data", d => {
      err += d;
      const m = /listening on (http:\/\/127\.0\.0\.1:(\d+))/.exec(err);
      if (m && timer) {
        clearTimeout(timer);
        resolve({
          url: m[1], port: Number(m[2]), pid: proc.pid, stderr: () => err,
          stop: () => new Promise(done => { proc.on("exit", code => done(code)); proc.kill("SIGTERM"); }),
        });
      }
    });
    proc.on("exit", code => { clearTimeout(timer); if (!/listening/.test(err)) reject(new Error(`loom serve exited ${code}:\n${err}`)); });
  });
}

/** Resident set size of a process in KiB (Linux /proc). */
function rssKiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m[1]);
}

function assert(cond, msg) { if (!cond) throw new Error("assertion failed: " + msg); }

/** Runs main(); exits 0 on success, 1 with the error otherwise. */
function run(main) {
  main().then(() => process.exit(0), e => { console.error(e && e.stack || e); process.exit(1); });
}

module.exports = { need, startServer, rssKiB, assert, run, DATA, LOOM };
