// `loom serve` through the official `openai` npm client, exactly as a user calls it: the model
// list, and a translation through the client's generic POST (client.post). Chat (streamed and
// not), completions and embeddings need the decoder-LLM and embedding layers, which this build
// does not serve yet: the test checks that those routes answer with an OpenAI-style 404 that
// the client raises as openai.NotFoundError.
"use strict";
const { need, startServer, assert, run, DATA } = require("./common.cjs");
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const OpenAI = need("openai").default || need("openai");

run(async () => {
  const model = path.join(DATA, "hf-tiny/marian-en-zh");
  const server = await startServer(["--model", "mt=" + model, "--api-key", "test-key"]);
  try {
    const client = new OpenAI({ baseURL: server.url + "/v1", apiKey: "test-key" });
    const models = await client.models.list();
    assert(models.data.length === 1 && models.data[0].id === "mt", "models: " + JSON.stringify(models.data));

    const lines = ["Hello world.", "The weather is nice today. Let us go for a walk!"];
    const r = await client.post("/translations", { body: { model: "mt", input: lines, beam_size: 1 } });
    assert(r.object === "translation.list" && r.data.length === 2, JSON.stringify(r));
    // The same text `loom translate` writes for the same lines.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "loom-openai-"));
    fs.writeFileSync(path.join(dir, "in.txt"), lines.join("\n") + "\n");
    execFileSync(process.env.LOOM_BINARY, ["translate", "--model", model, "--beam", "1", "--no-progress",
      path.join(dir, "in.txt"), path.join(dir, "out.txt")]);
    const expected = fs.readFileSync(path.join(dir, "out.txt"), "utf8").split("\n").slice(0, 2);
    fs.rmSync(dir, { recursive: true });
    for (let i = 0; i < 2; i++) assert(r.data[i].translation === expected[i], `line ${i}: ${r.data[i].translation} != ${expected[i]}`);
    assert(r.usage.total_tokens === r.usage.prompt_tokens + r.usage.completion_tokens, "usage");

    // Errors surface as the client's typed errors.
    let caught = null;
    try { await client.post("/translations", { body: { model: "nope", input: "x" } }); } catch (e) { caught = e; }
    assert(caught instanceof OpenAI.NotFoundError, "unknown model -> NotFoundError, got " + caught);
    assert(caught.error && caught.error.code === "model_not_found", JSON.stringify(caught.error));
    caught = null;
    try { await client.post("/translations", { body: { model: "mt", input: "" } }); } catch (e) { caught = e; }
    assert(caught instanceof OpenAI.BadRequestError && caught.error.param === "input", "empty input -> 400");
    const bad = new OpenAI({ baseURL: server.url + "/v1", apiKey: "wrong", maxRetries: 0 });
    caught = null;
    try { await bad.models.list(); } catch (e) { caught = e; }
    assert(caught instanceof OpenAI.AuthenticationError, "wrong key -> AuthenticationError");
    caught = null;
    try { await client.chat.completions.create({ model: "mt", messages: [{ role: "user", content: "hi" }] }); } catch (e) { caught = e; }
    assert(caught instanceof OpenAI.NotFoundError, "chat without an LLM -> NotFoundError");
    console.log("openai client: models, translations (== loom translate), typed errors OK;",
                "chat/completions/embeddings: not served by this build yet");
  } finally {
    await server.stop();
  }
});
