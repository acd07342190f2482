/* Playground: POST /v1/chat/completions; show the answer, the adapters used with their weights, and a gate
   heatmap (sites x experts) when the response carries per-layer gate weights.
   Read from the response (top level or under "loom"): route, adapters ({id: weight} or [{id, weight}]),
   gate_weights ({site: [weight per expert]}), experts ([id...]) and scores ({id: cosine}). */
"use strict";

function pickExt(body, key) {
  if (body && body.loom && body.loom[key] !== undefined) return body.loom[key];
  if (body && body[key] !== undefined) return body[key];
  const c = body && body.choices && body.choices[0];
  return c && c[key] !== undefined ? c[key] : undefined;
}

function asPairs(adapters) {
  if (!adapters) return [];
  if (Array.isArray(adapters)) return adapters.map((a) => typeof a === "string" ? [a, null] : [a.id || a.name || a.model, a.weight]);
  return Object.entries(adapters);
}

function heatmap(gates, experts) {
  /* gates: {site: [w per expert]} -> an inline SVG grid plus a table with the same numbers. */
  const sites = Object.keys(gates);
  const n = Math.max(0, ...sites.map((s) => (gates[s] || []).length));
  if (!sites.length || !n) return null;
  const names = experts && experts.length === n ? experts : Array.from({ length: n }, (_, i) => "expert " + (i + 1));
  const cell = 30, left = 110, top = 22;
  const short = (site) => {
    const m = /layers\.(\d+)\.(?:[\w]+\.)*?([\w]+)$/.exec(site);
    return m ? `L${m[1]} ${m[2]}` : site.slice(-16);
  };
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  const width = left + n * cell + 2, height = top + sites.length * cell + 2;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", String(width)); svg.setAttribute("height", String(height));
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `Gate weights: ${sites.length} layers by ${n} experts; the table below has the numbers`);
  svg.setAttribute("class", "heatmap");
  const text = (x, y, value, anchor) => {
    const t = document.createElementNS(NS, "text");
    t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("font-size", "10");
    t.setAttribute("text-anchor", anchor); t.setAttribute("fill", "#5d5a66"); t.textContent = value;
    svg.append(t);
  };
  for (let c = 0; c < n; c++) text(left + c * cell + (cell - 2) / 2, top - 8, "E" + (c + 1), "middle");
  sites.forEach((site, r) => {
    text(left - 6, top + r * cell + cell / 2 + 2, short(site), "end");
    (gates[site] || []).forEach((w, c) => {
      const rect = document.createElementNS(NS, "rect");
      rect.setAttribute("x", left + c * cell); rect.setAttribute("y", top + r * cell);
      rect.setAttribute("width", cell - 2); rect.setAttribute("height", cell - 2); rect.setAttribute("rx", 3);
      rect.setAttribute("fill", "#5b3cc4");
      rect.setAttribute("fill-opacity", String(Math.max(0.04, Math.min(1, Number(w) || 0))));
      const t = document.createElementNS(NS, "title"); t.textContent = `${site} · ${names[c]}: ${Number(w).toFixed(3)}`;
      rect.append(t); svg.append(rect);
    });
  });
  const legend = Loom.el("p", { class: "muted small" }, names.map((e, i) => `E${i + 1} = ${e}`).join(" · "));
  const head = Loom.el("tr", {}, Loom.el("th", { scope: "col", text: "Layer" }), ...names.map((e) => Loom.el("th", { scope: "col", text: e })));
  const rows = sites.map((s) => Loom.el("tr", {}, Loom.el("th", { scope: "row", text: s }),
    ...(gates[s] || []).map((w) => Loom.el("td", { text: Number(w).toFixed(3) }))));
  const table = Loom.el("details", {}, Loom.el("summary", { text: "Gate weights as a table" }),
    Loom.el("div", { class: "table-scroll" }, Loom.el("table", { class: "jobs gates" }, Loom.el("thead", {}, head), Loom.el("tbody", {}, ...rows))));
  return Loom.el("div", { class: "gates-box" }, Loom.el("h3", { text: "Gate weights per layer" }), svg, legend, table);
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("play-form");
  if (!form) return;
  const top = document.getElementById("play-errors");
  const box = document.getElementById("play-answer");
  const fieldErr = (id, msg) => {
    const e = document.getElementById("err-" + id); e.textContent = msg; e.hidden = !msg;
    const input = document.getElementById(id === "model" ? "p-model" : "p-prompt");
    if (msg) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
    return input;
  };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    top.hidden = true; fieldErr("model", ""); fieldErr("prompt", "");
    const model = form.elements.model.value.trim();
    const prompt = form.elements.prompt.value;
    if (!model) { fieldErr("model", "Choose a model: auto, a base model or an adapter.").focus(); return; }
    if (!prompt.trim()) { fieldErr("prompt", "Write a message.").focus(); return; }
    const payload = { model: model, messages: [{ role: "user", content: prompt }],
      max_tokens: parseInt(form.elements.max_tokens.value, 10) || 64, temperature: Number(form.elements.temperature.value) || 0 };
    const submit = document.getElementById("play-submit");
    const progress = document.getElementById("play-progress");
    submit.disabled = true; progress.textContent = "Generating…";
    let resp, body;
    try {
      resp = await Loom.api("/v1/chat/completions", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) });
      body = await Loom.readJson(resp);
    } catch (e) {
      top.replaceChildren(Loom.el("p", { text: "Could not reach the hub: " + e.message })); top.hidden = false; top.focus(); return;
    } finally { submit.disabled = false; progress.textContent = ""; }
    if (!resp.ok) {
      const err = Loom.errorOf(resp, body);
      if (resp.status === 404 && /no route/i.test(err.message)) {
        top.replaceChildren(Loom.el("p", { text: "Inference is not available on this hub yet." }), Loom.el("p", { class: "server-msg", text: err.message }));
      } else if (err.details && /^model|merged_adapters/.test(String(err.details.field || "")) || (resp.status === 404 && /model/i.test(err.message))) {
        fieldErr("model", err.message).focus(); return;
      } else if (err.details && err.details.field === "messages") {
        fieldErr("prompt", err.message).focus(); return;
      } else {
        top.replaceChildren(Loom.el("p", { text: err.message }));
      }
      top.hidden = false; top.focus(); return;
    }
    const choice = body.choices && body.choices[0];
    const text = choice ? ((choice.message && choice.message.content) || choice.text || "") : "";
    document.getElementById("answer-text").replaceChildren(Loom.el("pre", { class: "completion" }, text));
    const meta = document.getElementById("answer-meta");
    meta.replaceChildren();
    const route = pickExt(body, "route");
    const facts = Loom.el("dl", { class: "facts" }, Loom.el("div", {}, Loom.el("dt", { text: "Model" }), Loom.el("dd", { text: body.model || model })));
    if (route) facts.append(Loom.el("div", {}, Loom.el("dt", { text: "Route" }), Loom.el("dd", { text: route })));
    const base = pickExt(body, "base");
    if (base) facts.append(Loom.el("div", {}, Loom.el("dt", { text: "Base" }), Loom.el("dd", { text: base })));
    if (body.usage) facts.append(Loom.el("div", {}, Loom.el("dt", { text: "Tokens" }), Loom.el("dd", { text: `${body.usage.prompt_tokens} in, ${body.usage.completion_tokens} out` })));
    meta.append(facts);
    const pairs = asPairs(pickExt(body, "adapters"));
    if (pairs.length) {
      const rows = pairs.map(([id, w]) => Loom.el("tr", {}, Loom.el("th", { scope: "row" }, Loom.el("a", { href: "/a/" + String(id).split("@")[0], text: id })),
        Loom.el("td", {}, w === null || w === undefined ? "—" : Loom.el("meter", { min: "0", max: "1", value: String(w), "aria-label": "weight of " + id }, String(w))),
        Loom.el("td", { text: w === null || w === undefined ? "" : Number(w).toFixed(3) })));
      meta.append(Loom.el("h3", { text: "Adapters used" }), Loom.el("table", { class: "jobs adapters-used" },
        Loom.el("thead", {}, Loom.el("tr", {}, ...["Adapter", "Weight", ""].map((h) => Loom.el("th", { scope: "col", text: h })))), Loom.el("tbody", {}, ...rows)));
    } else {
      meta.append(Loom.el("p", { class: "muted", text: "No adapter was applied: the base model answered." }));
    }
    const scores = pickExt(body, "scores");
    if (scores && typeof scores === "object" && Object.keys(scores).length) {
      meta.append(Loom.el("h3", { text: "Semantic router: similarity of each candidate" }),
        Loom.el("ul", { class: "scores" }, ...Object.entries(scores).sort((a, b) => b[1] - a[1])
          .map(([id, v]) => Loom.el("li", {}, Loom.el("code", { text: id }), " " + Number(v).toFixed(3)))));
    }
    const gates = pickExt(body, "gate_weights");
    const hm = gates && typeof gates === "object" && !Array.isArray(gates) ? heatmap(gates, pickExt(body, "experts")) : null;
    document.getElementById("answer-gates").replaceChildren(...(hm ? [hm] : []));
    box.hidden = false;
  });
});
