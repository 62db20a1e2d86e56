// The rnnkit serve page: reads /info, shows the form the run's task needs, calls /predict and /generate.
// Plain DOM calls only (no framework, nothing loaded from elsewhere); text from the server is set as text.
"use strict";

const $ = (id) => document.getElementById(id);
let INFO = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k === "style") Object.assign(node.style, v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

function fmt(v, digits = 4) {
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(digits);
  if (v === null || v === undefined) return "";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

async function postJSON(url, body) {
  const r = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  let data = null;
  try { data = await r.json(); } catch (e) { data = { error: `HTTP ${r.status}` }; }
  if (!r.ok) throw new Error(data && data.error ? data.error : `HTTP ${r.status}`);
  return data;
}

function setStatus(node, text, isError = false) {
  node.textContent = text;
  node.classList.toggle("error", isError);
}

// -- what each task shows ---------------------------------------------------------------------------------
const VIEWS = {
  "classify-text": { label: "Type a review (or any text) to classify", button: "Classify", rows: 4 },
  "tag": { label: "Type a sentence (words separated by spaces)", button: "Tag", rows: 2 },
  "transduce": { label: "Type a word", button: "Transduce", rows: 1 },
  "continue": { label: "Type the start of a text", button: "Continue", rows: 2 },
  "forecast": { label: "A CSV file with the recent history", button: "Forecast" },
  "classify-files": { label: "Files to classify", button: "Classify" },
  "caption": { label: "Images to caption", button: "Caption" },
  "files": { label: "Input files", button: "Predict" },
  "compose": { label: "Prompt events (empty: a new piece)", button: "Compose", rows: 2 },
};

function renderProbabilities(r) {
  const list = el("ul", { class: "probs" });
  const entries = Object.entries(r.probabilities || {}).sort((a, b) => b[1] - a[1]);
  for (const [label, p] of entries) {
    const bar = el("span", { class: "bar", style: { width: `${(100 * p).toFixed(1)}%` } });
    list.append(el("li", {}, el("span", { class: "plabel", text: label }), el("span", { class: "track", "aria-hidden": "true" }, bar),
      el("span", { class: "pvalue", text: `${(100 * p).toFixed(1)}%` })));
  }
  return list;
}

function renderTokens(r, kind) {
  const weights = r[kind];
  const box = el("p", { class: "tokens", id: "tokens" });
  const top = Math.max(1e-12, ...weights.map((w) => Math.abs(w)));
  for (let i = 0; i < r.tokens.length; i++) {
    if (i > 0 && r.offsets && r.offsets[i][0] > r.offsets[i - 1][1]) box.append(" ");
    const w = weights[i];
    const a = Math.abs(w) / top;
    const span = el("mark", { class: "tok", title: `${kind} ${w.toFixed(4)}`, "data-weight": String(w) }, r.tokens[i]);
    const rgb = kind === "saliency" && w < 0 ? "33, 102, 172" : "230, 120, 0";
    span.style.background = `rgba(${rgb}, ${(0.08 + 0.82 * a).toFixed(3)})`;
    if (a > 0.6) span.classList.add("strong");
    box.append(span);
  }
  return box;
}

function renderClassification(r) {
  const out = el("div", { class: "card" });
  out.append(el("p", { class: "verdict" }, "Label: ", el("strong", { id: "label", text: r.label }),
    ` (probability ${(100 * r.probability).toFixed(1)}%)`));
  out.append(renderProbabilities(r));
  if (r.tokens && (r.attention || r.saliency)) {
    const kind = r.attention ? "attention" : "saliency";
    out.append(renderTokens(r, kind));
    const legend = kind === "attention"
      ? "Highlighting: the attention pooling's weight on each token (darker: the model looked at it more)."
      : "Highlighting: gradient \u00d7 input saliency of each token (the run pools by " +
        `${INFO.model.config.pooling || "another rule"}, not attention). Orange: speaks for \u201c${r.label}\u201d, ` +
        "blue: against it; darker: stronger.";
    out.append(el("p", { class: "legend", text: legend }));
  } else if (INFO.page.highlight === "saliency") {
    out.append(el("p", { class: "legend", text: "Tick \u201chighlight words\u201d to see which words mattered." }));
  }
  return out;
}

function renderTransduction(r) {
  const out = el("div", { class: "card" });
  out.append(el("p", { class: "verdict" }, el("span", { text: r.source + " \u2192 " }), el("strong", { id: "prediction", text: r.prediction || "(nothing)" })));
  out.append(el("p", { class: "small", text: `score (log-probability) ${fmt(r.score)}` }));
  if (r.attention) {
    const table = el("table", { class: "attention", id: "attention" });
    table.append(el("caption", { text: "Attention: each output token's weights over the source (rows sum to 1)" }));
    const head = el("tr", {}, el("th", { scope: "col", text: "output \\ source" }));
    for (const s of r.source_tokens) head.append(el("th", { scope: "col", text: s === " " ? "\u2423" : s }));
    table.append(el("thead", {}, head));
    const body = el("tbody");
    r.attention.forEach((row, i) => {
      const tr = el("tr", {}, el("th", { scope: "row", text: r.output_tokens[i] }));
      for (const w of row) {
        const td = el("td", { title: w.toFixed(3), text: w >= 0.005 ? w.toFixed(2) : "" });
        td.style.background = `rgba(31, 96, 160, ${w.toFixed(3)})`;
        if (w > 0.5) td.classList.add("strong");
        tr.append(td);
      }
      body.append(tr);
    });
    table.append(body);
    out.append(el("div", { class: "scroll" }, table));
  }
  return out;
}

function renderTags(r) {
  const out = el("div", { class: "card tagged-sentence" });
  if (!r.tokens.length) out.append(el("p", { text: "(no tokens)" }));
  r.tokens.forEach((t, i) => out.append(el("span", { class: "tagged" }, el("span", { class: "word", text: t }), el("span", { class: "tag", text: r.tags[i] }))));
  return out;
}

function renderContinuation(r) {
  return el("div", { class: "card" }, el("p", { class: "generated" }, el("span", { class: "prompt", text: r.prompt }), el("span", { class: "continuation", text: r.continuation })));
}

function svgNode(tag, attrs, text) {
  const n = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  if (text !== undefined) n.textContent = text;
  return n;
}

function renderForecast(r) {
  const out = el("div", { class: "card" });
  const hist = (r.history && r.history.values) || [];
  const H = r.forecast.length, N = hist.length;
  const W = 720, Ht = 300, pad = { l: 56, r: 16, t: 16, b: 36 };
  const all = hist.filter((v) => v !== null).concat(r.forecast, r.lower || [], r.upper || []);
  let lo = Math.min(...all), hi = Math.max(...all);
  if (hi === lo) { hi += 1; lo -= 1; }
  const x = (i) => pad.l + (i / Math.max(1, N + H - 1)) * (W - pad.l - pad.r);
  const y = (v) => pad.t + (1 - (v - lo) / (hi - lo)) * (Ht - pad.t - pad.b);
  const svg = svgNode("svg", { viewBox: `0 0 ${W} ${Ht}`, role: "img", id: "forecast-plot", class: "plot" });
  svg.append(svgNode("title", {}, `History (${N} values) and a forecast of ${H} steps` + (r.lower ? ` with a ${Math.round(100 * (r.interval || 0))}% interval` : "")));
  svg.append(svgNode("rect", { x: pad.l, y: pad.t, width: W - pad.l - pad.r, height: Ht - pad.t - pad.b, class: "frame" }));
  for (const v of [lo, (lo + hi) / 2, hi]) {
    svg.append(svgNode("line", { x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(svgNode("text", { x: pad.l - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, v.toPrecision(4)));
  }
  if (r.lower && r.upper) {
    const pts = r.upper.map((v, i) => `${x(N + i)},${y(v)}`).concat(r.lower.map((v, i) => `${x(N + i)},${y(v)}`).reverse());
    // the band starts at the last observed value
    if (N && hist[N - 1] !== null) pts.unshift(`${x(N - 1)},${y(hist[N - 1])}`), pts.push(`${x(N - 1)},${y(hist[N - 1])}`);
    svg.append(svgNode("polygon", { points: pts.join(" "), class: "band" }));
  }
  let path = "";
  hist.forEach((v, i) => { if (v !== null) path += `${path && hist[i - 1] !== null ? "L" : "M"}${x(i)},${y(v)} `; });
  svg.append(svgNode("path", { d: path, class: "history" }));
  const start = N && hist[N - 1] !== null ? `M${x(N - 1)},${y(hist[N - 1])} ` : "";
  svg.append(svgNode("path", { d: start + r.forecast.map((v, i) => `${start || i ? "L" : "M"}${x(N + i)},${y(v)}`).join(" "), class: "forecast" }));
  const times = (r.history && r.history.times) || [];
  if (N) {
    svg.append(svgNode("text", { x: x(0), y: Ht - 12, class: "axis" }, String(times[0])));
    svg.append(svgNode("text", { x: x(N - 1), y: Ht - 12, "text-anchor": "end", class: "axis" }, String(times[N - 1])));
  }
  svg.append(svgNode("text", { x: W - pad.r - 4, y: pad.t + 14, "text-anchor": "end", class: "axis" }, `forecast: +${H} steps`));
  out.append(el("div", { class: "legend-row" },
    el("span", { class: "key history-key", text: "history" }), el("span", { class: "key forecast-key", text: "forecast" }),
    r.lower ? el("span", { class: "key band-key", text: `${Math.round(100 * (r.interval || 0))}% interval` }) : null));
  out.append(svg);
  const table = el("table", { class: "numbers" });
  table.append(el("thead", {}, el("tr", {}, el("th", { text: "step" }), el("th", { text: "forecast" }), el("th", { text: "lower" }), el("th", { text: "upper" }))));
  const body = el("tbody");
  r.forecast.forEach((v, i) => body.append(el("tr", {}, el("td", { text: `+${i + 1}` }), el("td", { text: fmt(v) }),
    el("td", { text: r.lower ? fmt(r.lower[i]) : "" }), el("td", { text: r.upper ? fmt(r.upper[i]) : "" }))));
  table.append(body);
  out.append(el("details", {}, el("summary", { text: "numbers" }), table));
  return out;
}

function renderTable(results) {
  const keys = [];
  for (const r of results) for (const k of Object.keys(r)) if (!keys.includes(k)) keys.push(k);
  const table = el("table", { class: "numbers" });
  table.append(el("thead", {}, el("tr", {}, ...keys.map((k) => el("th", { scope: "col", text: k })))));
  const body = el("tbody");
  for (const r of results) body.append(el("tr", {}, ...keys.map((k) => el("td", { text: fmt(r[k]) }))));
  table.append(body);
  return el("div", { class: "card scroll" }, table);
}

function render(results) {
  const box = $("result");
  box.replaceChildren();
  const view = INFO.page.view;
  for (const r of results) {
    if (view === "classify-text") box.append(renderClassification(r));
    else if (view === "transduce") box.append(renderTransduction(r));
    else if (view === "tag") box.append(renderTags(r));
    else if (view === "continue") box.append(renderContinuation(r));
    else if (view === "forecast") box.append(renderForecast(r));
  }
  if (!["classify-text", "transduce", "tag", "continue", "forecast"].includes(view)) box.append(renderTable(results));
}

// -- reading the form ---------------------------------------------------------------------------------------
function readFile(file, binary) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onerror = () => reject(new Error(`cannot read ${file.name}`));
    reader.onload = () => {
      if (!binary) resolve({ name: file.name, content: reader.result });
      else resolve({ name: file.name, content_base64: String(reader.result).split(",", 2)[1] || "" });
    };
    if (binary) reader.readAsDataURL(file); else reader.readAsText(file);
  });
}

async function predictInputs() {
  if (INFO.page.input === "text") {
    const text = $("text-input").value;
    if (!text.trim()) throw new Error("Type something first.");
    return [text];
  }
  const files = Array.from($("file-input").files || []);
  if (files.length) return Promise.all(files.map((f) => readFile(f, INFO.page.binary && !f.name.toLowerCase().endsWith(".csv"))));
  const pasted = $("file-text").value;
  if (!pasted.trim()) throw new Error("Choose a file, or paste its text.");
  const suffix = (INFO.page.accept.split(",")[0] || ".txt");
  return [{ name: `pasted${suffix}`, content: pasted }];
}

async function onPredict(event) {
  event.preventDefault();
  const status = $("status"), button = $("predict-button");
  button.disabled = true;
  setStatus(status, "Working\u2026");
  try {
    const body = { inputs: await predictInputs() };
    if (INFO.page.highlight === "saliency" && $("saliency").checked) body.saliency = true;
    const data = await postJSON("/predict", body);
    render(data.results);
    setStatus(status, "Done.");
  } catch (e) {
    setStatus(status, e.message, true);
  } finally {
    button.disabled = false;
  }
}

async function onGenerate(event) {
  event.preventDefault();
  const status = $("generate-status"), button = $("generate-button"), box = $("generate-result");
  button.disabled = true;
  setStatus(status, "Generating\u2026");
  const body = { prompts: [$("prompt").value] };
  for (const [id, key, parse] of [["max-tokens", "max_tokens", parseInt], ["temperature", "temperature", parseFloat],
    ["top-k", "top_k", parseInt], ["num-samples", "num_samples", parseInt], ["seed", "seed", parseInt]]) {
    const v = $(id).value.trim();
    if (v !== "") body[key] = parse(v, 10);
  }
  try {
    const data = await postJSON("/generate", body);
    box.replaceChildren();
    data.samples.forEach((s, i) => {
      const card = el("div", { class: "card" }, el("h3", { text: `Sample ${i + 1}` }));
      for (const [k, v] of Object.entries(s)) {
        if (k === "files") continue;
        if (typeof v === "string") card.append(el("p", { class: "small", text: k }), el("pre", { class: "generated", text: v }));
        else card.append(el("p", { class: "small", text: `${k}: ${fmt(v)}` }));
      }
      for (const f of s.files || []) {
        if (/\.(png|jpe?g)$/i.test(f.name)) card.append(el("img", { src: f.url, alt: f.name, class: "plot" }));
        card.append(el("p", {}, el("a", { href: f.url, download: f.name, text: `Download ${f.name}` })));
      }
      box.append(card);
    });
    setStatus(status, "Done.");
  } catch (e) {
    setStatus(status, e.message, true);
  } finally {
    button.disabled = false;
  }
}

// -- the page from /info --------------------------------------------------------------------------------------
function showInfo(info) {
  INFO = info;
  document.title = `rnnkit \u00b7 ${info.task} \u00b7 ${info.run}`;
  $("title").textContent = `rnnkit \u00b7 ${info.run}`;
  $("subtitle").textContent = `${info.task}: ${info.description || info.input_help}`;
  const view = VIEWS[info.page.view] || VIEWS.files;
  $("predict").hidden = false;
  $("input-help").textContent = `Input: ${info.input_help}.`;
  $("predict-button").textContent = view.button;
  if (info.page.input === "text") {
    $("text-label").textContent = view.label;
    $("text-input").rows = view.rows || 3;
  } else {
    $("text-field").hidden = true;
    $("file-field").hidden = false;
    $("file-label").textContent = view.label;
    if (info.page.accept) $("file-input").accept = info.page.accept;
    if (info.page.view === "forecast") $("file-input").multiple = false;
  }
  $("saliency-field").hidden = info.page.highlight !== "saliency";
  if (info.page.generate) $("generate").hidden = false;
  if (info.page.view === "compose" && info.page.generate) $("predict").hidden = true; // pieces come from Generate

  const dl = $("model-info");
  const c = info.model.config || {};
  const enc = c.encoder || {};
  const facts = [["task", info.task], ["model", `${info.model.kind}, ${info.model.parameters.toLocaleString()} parameters`]];
  if (enc.cell) facts.push(["encoder", `${enc.bidirectional ? "bidirectional " : ""}${enc.cell}, ${enc.num_layers || 1} layer(s), hidden ${fmt(enc.hidden_size)}`]);
  if (c.pooling) facts.push(["pooling", c.pooling]);
  if (info.labels) facts.push(["labels", info.labels.join(", ")]);
  if (info.dataset && info.dataset.sizes) facts.push(["data", Object.entries(info.dataset.sizes).map(([k, v]) => `${k} ${v}`).join(", ")]);
  for (const [k, v] of facts) dl.append(el("dt", { text: k }), el("dd", { text: v }));
  const tbody = $("metrics").querySelector("tbody");
  for (const [k, v] of Object.entries((info.metrics && info.metrics.test) || {})) tbody.append(el("tr", {}, el("th", { scope: "row", text: k }), el("td", { text: fmt(v) })));
  $("about").hidden = false;
  if (info.plots.length) {
    for (const p of info.plots) {
      const name = p.name.replace(/\.png$/, "").replace(/_/g, " ");
      $("plot-list").append(el("figure", {}, el("img", { src: p.url, alt: `${name} (plot from training)`, loading: "lazy" }), el("figcaption", { text: name })));
    }
    $("plots").hidden = false;
  }
  document.body.dataset.ready = "true";
}

async function start() {
  $("predict-form").addEventListener("submit", onPredict);
  $("generate-form").addEventListener("submit", onGenerate);
  try {
    const r = await fetch("/info");
    if (!r.ok) throw new Error(`/info answered HTTP ${r.status}`);
    showInfo(await r.json());
  } catch (e) {
    const box = $("load-error");
    box.textContent = `Cannot load the run's description: ${e.message}`;
    box.hidden = false;
  }
}

document.addEventListener("DOMContentLoaded", start);
