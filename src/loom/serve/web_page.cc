// The page GET / serves: one HTML document, CSS and JS inline, nothing loaded from elsewhere.
// Translate tab: POST /v1/translations, source and translation side by side with the segments
// of both sides highlighted together on hover, .txt/.md/.jsonl drop, download. Chat tab:
// POST /v1/chat/completions with "stream": true (server-sent events), a stop button (aborts the
// fetch, which closes the connection and cancels the work), and the conversation history.
#include "loom/serve/server.h"

namespace loom::serve {

const std::string& web_page() {
  static const std::string page = R"LOOMPAGE(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>loom</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{display:flex;gap:1em;align-items:center;padding:.6em 1.2em;background:#1d2330;color:#fff}
header h1{font-size:1.1em;margin:0 1em 0 0}
nav button{background:none;border:0;color:#aab;font-size:1em;padding:.4em .8em;cursor:pointer}
nav button.on{color:#fff;border-bottom:2px solid #6cf}
header input{margin-left:auto;width:14em}
main{padding:1em 1.2em}
.row{display:flex;gap:.6em;flex-wrap:wrap;align-items:center;margin-bottom:.8em}
textarea{width:100%;box-sizing:border-box;min-height:8em;font:inherit;padding:.5em}
.cols{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:1em}
.pane{background:#fff;border:1px solid #d5d9e0;border-radius:6px;padding:.7em;min-height:6em;white-space:pre-wrap;overflow-wrap:anywhere}
.seg.t{border-radius:3px}.seg.t:hover,.seg.hl{background:#ffe48a}
#drop{border:2px dashed #b5bcc8;border-radius:6px;padding:.5em;text-align:center;color:#667}
#drop.over{background:#e6f4ff}
button.act{background:#2563eb;color:#fff;border:0;border-radius:5px;padding:.45em 1em;cursor:pointer}
button.act:disabled{background:#9ab}
#status,#cstatus{color:#667;font-size:.9em}
.err{color:#b00020}
#history{display:flex;flex-direction:column;gap:.5em;margin-bottom:.8em}
.msg{padding:.5em .8em;border-radius:8px;max-width:80%;white-space:pre-wrap}
.msg.user{align-self:flex-end;background:#dbeafe}.msg.assistant{align-self:flex-start;background:#fff;border:1px solid #d5d9e0}
[hidden]{display:none!important}
</style></head><body>
<header><h1>loom</h1><nav><button id="tab-translate" class="on">Translate</button><button id="tab-chat">Chat</button></nav>
<input id="apikey" type="password" placeholder="API key (if required)"></header>
<main>
<section id="translate">
 <div class="row">
  <label>Model <select id="tmodel"></select></label>
  <label>From <input id="src" size="10" list="langs" placeholder="default"></label>
  <label>To <input id="tgt" size="10" list="langs" placeholder="default"></label><datalist id="langs"></datalist>
  <label>Format <select id="format"><option value="markdown">Markdown</option><option value="text">Plain text</option></select></label>
  <label>Beam <input id="beam" type="number" min="1" max="16" size="3" placeholder="model"></label>
 </div>
 <textarea id="source" placeholder="Paste text here, or drop a .txt / .md / .jsonl file below"></textarea>
 <div class="row"><div id="drop">Drop a .txt, .md or .jsonl file here (JSONL: the "text" and "prompt" fields)</div>
  <button id="go" class="act">Translate</button><button id="download" disabled>Download</button><span id="status"></span></div>
 <div class="cols"><div id="srcview" class="pane"></div><div id="tgtview" class="pane"></div></div>
</section>
<section id="chat" hidden>
 <div class="row"><label>Model <select id="cmodel"></select></label><button id="clear">New chat</button><span id="cstatus"></span></div>
 <div id="history"></div>
 <textarea id="prompt" placeholder="Message (Ctrl+Enter sends)"></textarea>
 <div class="row"><button id="send" class="act">Send</button><button id="stop" disabled>Stop</button></div>
</section>
</main>
<script>
"use strict";
const $ = id => document.getElementById(id);
const key = $("apikey");
key.value = localStorage.getItem("loom-api-key") || "";
key.onchange = () => localStorage.setItem("loom-api-key", key.value);
function headers() {
  const h = {"Content-Type": "application/json"};
  if (key.value) h.Authorization = "Bearer " + key.value;
  return h;
}
async function api(path, body, signal) {
  const r = await fetch(path, body === undefined ? {headers: headers()} :
                        {method: "POST", headers: headers(), body: JSON.stringify(body), signal});
  if (!r.ok) {
    let m = r.status + " " + r.statusText;
    try { m = (await r.json()).error.message; } catch (e) {}
    throw new Error(m);
  }
  return r;
}
for (const t of ["translate", "chat"]) {
  $("tab-" + t).onclick = () => {
    for (const u of ["translate", "chat"]) { $(u).hidden = u !== t; $("tab-" + u).classList.toggle("on", u === t); }
  };
}
let models = [];
async function loadModels() {
  try {
    models = (await (await api("/v1/models")).json()).data;
  } catch (e) { $("status").textContent = "cannot list models: " + e.message; return; }
  const fill = (sel, kind) => {
    sel.innerHTML = "";
    for (const m of models.filter(m => m.kind === kind)) sel.add(new Option(m.id, m.id));
  };
  fill($("tmodel"), "translation");
  fill($("cmodel"), "chat");
  if (!$("cmodel").options.length) $("cstatus").textContent = "no chat model is loaded (start loom serve with --model NAME=DIR of a decoder LLM)";
  pickModel();
}
function pickModel() {
  const m = models.find(m => m.id === $("tmodel").value);
  const dl = $("langs"); dl.innerHTML = "";
  if (!m) return;
  for (const l of m.languages || []) dl.append(new Option(l));
  $("src").placeholder = m.default_source_lang || "default";
  $("tgt").placeholder = m.default_target_lang || "default";
}
$("tmodel").onchange = pickModel;

// ---- Translate ----
let lastResult = null, jsonlRows = null, fileName = "translation.txt";
function span(text, i, translate, side) {
  const s = document.createElement("span");
  s.textContent = text;
  s.className = "seg" + (translate ? " t" : "");
  if (translate) {
    s.dataset.seg = i;
    s.onmouseenter = () => document.querySelectorAll('[data-seg="' + i + '"]').forEach(e => e.classList.add("hl"));
    s.onmouseleave = () => document.querySelectorAll('[data-seg="' + i + '"]').forEach(e => e.classList.remove("hl"));
  }
  return s;
}
function render(data) {
  const sv = $("srcview"), tv = $("tgtview");
  sv.innerHTML = ""; tv.innerHTML = "";
  let k = 0;
  data.forEach((d, n) => {
    if (n) { sv.append("\n\n"); tv.append("\n\n"); }
    for (const s of d.segments) {
      sv.append(span(s.source, k, s.translate, "src"));
      tv.append(span(s.translation, k, s.translate, "tgt"));
      k++;
    }
  });
}
$("go").onclick = async () => {
  const text = $("source").value;
  let input = text;
  if (jsonlRows) {
    input = [];
    for (const r of jsonlRows) for (const f of ["prompt", "text"]) if (typeof r[f] === "string" && r[f]) input.push(r[f]);
  }
  if (!input.length) { $("status").textContent = "nothing to translate"; return; }
  const body = {model: $("tmodel").value, input, format: $("format").value};
  if ($("src").value) body.source_lang = $("src").value;
  if ($("tgt").value) body.target_lang = $("tgt").value;
  if ($("beam").value) body.beam_size = Number($("beam").value);
  $("go").disabled = true; $("status").className = ""; $("status").textContent = "translating…";
  const t0 = performance.now();
  try {
    const r = await (await api("/v1/translations", body)).json();
    lastResult = r;
    render(r.data);
    $("download").disabled = false;
    $("status").textContent = "done in " + ((performance.now() - t0) / 1000).toFixed(2) + " s, " +
      r.usage.prompt_tokens + " → " + r.usage.completion_tokens + " tokens";
  } catch (e) { $("status").className = "err"; $("status").textContent = e.message; }
  $("go").disabled = false;
};
$("download").onclick = () => {
  if (!lastResult) return;
  let out, name = fileName.replace(/(\.[^.]*)?$/, m => ".translated" + (m || ".txt"));
  if (jsonlRows) {
    const tgt = $("tgt").value || $("tgt").placeholder;
    let k = 0;
    out = jsonlRows.map(r => {
      const o = Object.assign({}, r);
      for (const f of ["prompt", "text"]) if (typeof r[f] === "string" && r[f]) o[f + "_" + tgt] = lastResult.data[k++].translation;
      return JSON.stringify(o);
    }).join("\n") + "\n";
  } else out = lastResult.data.map(d => d.translation).join("\n\n");
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([out], {type: "text/plain"}));
  a.download = name; a.click();
};
const drop = $("drop");
drop.ondragover = e => { e.preventDefault(); drop.classList.add("over"); };
drop.ondragleave = () => drop.classList.remove("over");
drop.ondrop = async e => {
  e.preventDefault(); drop.classList.remove("over");
  const f = e.dataTransfer.files[0];
  if (!f) return;
  fileName = f.name;
  const text = await f.text();
  jsonlRows = null;
  if (/\.jsonl$/i.test(f.name)) {
    try { jsonlRows = text.split("\n").filter(l => l.trim()).map(l => JSON.parse(l)); }
    catch (err) { $("status").className = "err"; $("status").textContent = "bad JSONL: " + err.message; return; }
    $("format").value = "markdown";
  } else $("format").value = /\.md$/i.test(f.name) ? "markdown" : "text";
  $("source").value = text;
  $("status").textContent = f.name + " loaded";
};
$("source").oninput = () => { jsonlRows = null; };

// ---- Chat ----
let history = [], controller = null;
function addMsg(role, text) {
  const d = document.createElement("div");
  d.className = "msg " + role; d.textContent = text;
  $("history").append(d);
  return d;
}
$("clear").onclick = () => { history = []; $("history").innerHTML = ""; };
$("prompt").onkeydown = e => { if (e.key === "Enter" && e.ctrlKey) $("send").click(); };
$("stop").onclick = () => { if (controller) controller.abort(); };
$("send").onclick = async () => {
  const text = $("prompt").value.trim();
  if (!text || controller) return;
  $("prompt").value = "";
  history.push({role: "user", content: text});
  addMsg("user", text);
  const out = addMsg("assistant", "");
  controller = new AbortController();
  $("send").disabled = true; $("stop").disabled = false; $("cstatus").textContent = "";
  let answer = "";
  try {
    const r = await api("/v1/chat/completions", {model: $("cmodel").value, messages: history, stream: true}, controller.signal);
    const reader = r.body.getReader(), dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buf += dec.decode(value, {stream: true});
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const ev = buf.slice(0, i); buf = buf.slice(i + 2);
        for (const line of ev.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const data = line.slice(6);
          if (data === "[DONE]") continue;
          const c = JSON.parse(data);
          if (c.error) throw new Error(c.error.message);
          const delta = c.choices[0].delta.content || "";
          answer += delta; out.textContent = answer;
        }
      }
    }
  } catch (e) {
    if (e.name === "AbortError") $("cstatus").textContent = "stopped";
    else { $("cstatus").className = "err"; $("cstatus").textContent = e.message; }
  }
  history.push({role: "assistant", content: answer});
  controller = null; $("send").disabled = false; $("stop").disabled = true;
};
loadModels();
</script></body></html>
)LOOMPAGE";
  return page;
}

}  // namespace loom::serve
