/* Compose page: POST /api/v1/compositions, then follow the job until it finishes (jobfollow.js). */
"use strict";

const COMPOSE_FIELDS = ["task", "base_model", "k", "sources", "weights", "method", "params", "name", "description",
  "tags", "visibility"];
const COMPOSE_INPUTS = { task: "c-task", base_model: "c-base", k: "c-k", sources: "c-sources", weights: "c-weights",
  method: "c-method", params: "c-params", name: "c-name", description: "c-description", tags: "c-tags" };

function composeFieldFor(err) {
  const f = Loom.errorField(err);
  if (f && COMPOSE_FIELDS.includes(f)) return f;
  if (f) return "params"; // a method parameter (density, ...) names itself
  if (/method/i.test(err.message)) return "method";
  if (/different base models/i.test(err.message)) return "sources";
  return null;
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("compose-form");
  if (!form) return;
  const top = document.getElementById("form-errors");
  const help = document.getElementById("c-method-help");
  const method = document.getElementById("c-method");

  const mode = () => form.querySelector("input[name=mode]:checked").value;
  form.querySelectorAll("input[name=mode]").forEach((r) => r.addEventListener("change", () => {
    document.getElementById("group-task").hidden = mode() !== "task";
    document.getElementById("group-sources").hidden = mode() !== "sources";
  }));
  method.addEventListener("change", () => {
    const opt = method.selectedOptions[0];
    help.replaceChildren(opt.dataset.summary || "");
    if (opt.dataset.paper) help.append(" ", Loom.el("a", { href: opt.dataset.paper, rel: "noopener noreferrer", text: "paper" }));
  });

  function clearErrors() {
    top.hidden = true; top.replaceChildren();
    for (const f of COMPOSE_FIELDS) {
      const box = document.getElementById("err-" + f);
      if (box) { box.hidden = true; box.textContent = ""; }
      const input = COMPOSE_INPUTS[f] && document.getElementById(COMPOSE_INPUTS[f]);
      if (input) input.removeAttribute("aria-invalid");
    }
  }
  function showField(field, message) {
    const box = document.getElementById("err-" + field);
    box.textContent = message; box.hidden = false;
    const input = COMPOSE_INPUTS[field] && document.getElementById(COMPOSE_INPUTS[field]);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      const det = input.closest("details"); if (det) det.open = true;
    }
    return input || box;
  }
  const showTop = Loom.alertIn(top);
  const jobs = Loom.jobFollower(showTop);
  const list = (s) => s.split(/[\n,]/).map((x) => x.trim()).filter(Boolean);

  function body() {
    const errors = [];
    const b = { method: method.value, visibility: form.querySelector("input[name=visibility]:checked").value };
    if (mode() === "task") {
      b.task = form.elements.task.value.trim();
      b.base_model = form.elements.base_model.value.trim();
      if (!b.task) errors.push(["task", "Describe the task."]);
      if (!b.base_model) errors.push(["base_model", "Name the base model the adapters are for."]);
      const k = parseInt(form.elements.k.value, 10);
      if (!Number.isNaN(k)) b.k = k;
    } else {
      b.sources = list(form.elements.sources.value);
      if (!b.sources.length) errors.push(["sources", "List at least one adapter."]);
      const w = form.elements.weights.value.trim();
      if (w) {
        b.weights = list(w).map(Number);
        if (b.weights.some((x) => !Number.isFinite(x))) errors.push(["weights", "Weights must be numbers, e.g. 0.7, 0.3"]);
      }
    }
    const p = form.elements.params.value.trim();
    if (p) {
      try {
        b.params = JSON.parse(p);
        if (typeof b.params !== "object" || Array.isArray(b.params) || b.params === null) throw new Error("not an object");
      } catch (e) { errors.push(["params", "Parameters must be a JSON object, e.g. {\"density\": 0.5}"]); }
    }
    for (const k of ["name", "description"]) { const v = form.elements[k].value.trim(); if (v) b[k] = v; }
    const tags = list(form.elements.tags.value); if (tags.length) b.tags = tags;
    return [b, errors];
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors();
    const [b, errors] = body();
    if (errors.length) { errors.map(([f, m]) => showField(f, m))[0].focus(); return; }
    const submit = document.getElementById("compose-submit");
    submit.disabled = true;
    let resp, data;
    try {
      resp = await Loom.api("/api/v1/compositions", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(b) });
      data = await Loom.readJson(resp);
    } catch (e) { showTop("Could not reach the hub: " + e.message); return; } finally { submit.disabled = false; }
    if (resp.status === 404 && /no route/i.test(Loom.errorOf(resp, data).message)) {
      showTop("Composition is not available on this hub yet."); return;
    }
    if (!resp.ok) {
      const err = Loom.errorOf(resp, data);
      const f = composeFieldFor(err);
      if (f) showField(f, err.message).focus();
      else showTop(err.message, err.code === "unauthenticated" ? Loom.el("p", {}, Loom.el("a", { href: "/signin", text: "Sign in with a token" })) : null);
      return;
    }
    jobs.start(data);
  });

  jobs.resume();
});
