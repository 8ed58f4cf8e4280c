// `loom serve` through the official `openai` npm client, exactly as a user calls it: the model
// list, chat completions (streamed and not: the streamed deltas concatenate to the one-shot
// answer, greedy equals HF's continuation in reference.json), completions (greedy == HF),
// embeddings (== HF sentence-transformers within 1e-5, float and base64), and a translation
// through the client's generic POST (client.post), plus the typed errors.
"use strict";
const { need, startServer, assert, run, DATA } = require("./common.cjs");
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const OpenAI = need("openai").default || need("openai");

run(async () => {
  const model = path.join(DATA, "hf-tiny/marian-en-zh");
  const server = await startServer(["--model", "mt=" + model, "--model", "lm=" + path.join(DATA, "hf-tiny/gemma"),
                                    "--model", "emb=" + path.join(DATA, "hf-tiny/bert-minilm"), "--api-key", "test-key"]);
  const gemma = JSON.parse(fs.readFileSync(path.join(DATA, "hf-tiny/gemma/reference.json"), "utf8"));
  const bert = JSON.parse(fs.readFileSync(path.join(DATA, "hf-tiny/bert-minilm/reference.json"), "utf8"));
  try {
    const client = new OpenAI({ baseURL: server.url + "/v1", apiKey: "test-key" });
    const models = await client.models.list();
    const ids = models.data.map(m => m.id).sort().join(",");
    assert(ids === "emb,lm,mt", "models: " + JSON.stringify(models.data));

    // Chat, not streamed: greedy over reference.json's conversation == HF's greedy answer.
    const messages = gemma.chat_template.messages;
    const chat = await client.chat.completions.create({ model: "lm", messages, temperature: 0, max_tokens: 20 });
    assert(chat.object === "chat.completion" && chat.choices[0].message.role === "assistant", JSON.stringify(chat));
    assert(chat.choices[0].message.content === gemma.cases[4].greedy.text,
           `chat: ${JSON.stringify(chat.choices[0].message.content)} != HF ${JSON.stringify(gemma.cases[4].greedy.text)}`);
    assert(chat.choices[0].finish_reason === "length" && chat.usage.completion_tokens === 20, JSON.stringify(chat.usage));
    // Streamed (greedy and seeded sampling): the deltas concatenate to the one-shot answer.
    for (const extra of [{ temperature: 0 }, { temperature: 0.8, top_p: 0.9, seed: 5 }]) {
      const one = await client.chat.completions.create({ model: "lm", messages, max_tokens: 16, ...extra });
      const stream = await client.chat.completions.create({ model: "lm", messages, max_tokens: 16, stream: true, ...extra });
      let text = "", chunks = 0, finish = null;
      for await (const chunk of stream) {
        chunks++;
        text += chunk.choices[0].delta.content || "";
        if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
      }
      assert(chunks > 2, "several chunks: " + chunks);
      assert(text === one.choices[0].message.content, `stream ${JSON.stringify(text)} != ${JSON.stringify(one.choices[0].message.content)}`);
      assert(finish === one.choices[0].finish_reason, "finish_reason " + finish);
    }

    // Completions: greedy == HF's continuation.
    const c0 = gemma.cases[0];
    const comp = await client.completions.create({ model: "lm", prompt: c0.prompt, temperature: 0, max_tokens: 20 });
    assert(comp.object === "text_completion" && comp.choices[0].text === c0.greedy.text,
           `completion ${JSON.stringify(comp.choices[0].text)} != HF ${JSON.stringify(c0.greedy.text)}`);
    assert(comp.usage.prompt_tokens === c0.input_ids.length, "prompt tokens");

    // Embeddings: == HF sentence-transformers within 1e-5 (the client asks for base64 by default
    // and decodes it; float explicitly too).
    const texts = bert.cases.map(c => c.text);
    for (const encoding_format of [undefined, "float"]) {
      const e = await client.embeddings.create({ model: "emb", input: texts, ...(encoding_format ? { encoding_format } : {}) });
      assert(e.data.length === texts.length, "one vector per text");
      e.data.forEach((d, i) => {
        const want = bert.cases[i].sentence_embedding;
        assert(d.embedding.length === want.length, "dimension");
        const worst = Math.max(...d.embedding.map((v, k) => Math.abs(v - want[k])));
        assert(worst <= 1e-5, `embedding ${i} (${encoding_format || "default"}) differs from HF by ${worst}`);
      });
    }

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
    try { await client.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "hi" }] }); } catch (e) { caught = e; }
    assert(caught instanceof OpenAI.NotFoundError, "chat with an unknown model -> NotFoundError");
    caught = null;
    try { await client.embeddings.create({ model: "emb", input: "" }); } catch (e) { caught = e; }
    assert(caught instanceof OpenAI.BadRequestError && caught.error.code === "empty_input", "empty embedding input -> 400");
    console.log("openai client: models, chat (== HF greedy; streamed == one-shot), completions (== HF greedy),",
                "embeddings (== HF within 1e-5), translations (== loom translate), typed errors OK");
  } finally {
    await server.stop();
  }
});
