/* Base models page: register a base via POST /api/v1/base-models (weights from a folder, a .gguf or the Hub). */
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("base-form");
  if (!form) return;
  const top = document.getElementById("base-errors");
  const result = document.getElementById("base-result");
  const IDS = { id: "b-id", weights: "b-weights", revision: "b-revision", config: "b-weights" };

  const fields = Loom.fieldErrors(["b-id", "b-weights", "b-revision"]);
  const clear = () => { top.hidden = true; top.replaceChildren(); result.hidden = true; result.replaceChildren(); fields.clear(); };
  const showField = fields.show, showTop = Loom.alertIn(top);

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clear();
    const body = { id: form.elements.id.value.trim(), weights: form.elements.weights.value.trim() };
    if (!body.id) { showField("b-id", "Give the model's id.").focus(); return; }
    if (!body.weights) { showField("b-weights", "Give where its weights are.").focus(); return; }
    const rev = form.elements.revision.value.trim(); if (rev) body.revision = rev;
    const submit = document.getElementById("base-submit"), progress = document.getElementById("base-progress");
    submit.disabled = true; progress.textContent = "Fetching the weights (this may take minutes)…";
    let resp, data;
    try {
      resp = await Loom.api("/api/v1/base-models", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      data = await Loom.readJson(resp);
    } catch (e) { showTop("Could not reach the hub: " + e.message); return; } finally { submit.disabled = false; progress.textContent = ""; }
    if (!resp.ok) {
      const err = Loom.errorOf(resp, data);
      const f = IDS[Loom.errorField(err)] || (err.details.repo_id || err.code === "upstream_error" || err.code === "not_found" ? "b-weights" : null);
      if (f) showField(f, err.message).focus();
      else showTop(err.message, err.code === "unauthenticated" ? Loom.el("p", {}, Loom.el("a", { href: "/signin", text: "Sign in with a token" })) : null);
      return;
    }
    const src = data.source || {};
    const from = src.kind === "hf" ? " from Hugging Face " + src.repo_id + " at commit " + src.sha
      : src.kind === "gguf" ? " (dequantized from " + src.file + ")" : "";
    result.replaceChildren(Loom.el("p", { text: "Registered " + data.id + "@" + data.revision + from + "." }));
    result.hidden = false; result.focus();
  });
});
