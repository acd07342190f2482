/* Generate page: POST /api/v1/generations (from a description) or POST /api/v1/transfers (to another base),
   then follow the job until it finishes (jobfollow.js). */
"use strict";

/* Per form: the API's field names -> the ids of their inputs (errors go to "err-" + id). */
const GENERATE_INPUTS = { generator: "g-generator", task: "g-task", samples: "g-samples", seed: "g-seed", name: "g-name",
  visibility: "g-visibility" };
const TRANSFER_INPUTS = { source: "t-source", target_base: "t-target", name: "t-name", params: "t-params",
  visibility: "t-visibility" };

/** The generate form's field an API error is about (null: a general error). */
function generateFieldFor(err) {
  const f = Loom.errorField(err);
  if (f && f in GENERATE_INPUTS) return f;
  if (f === "source" || f === "sources" || f === "base_model") return "generator"; // the generator's ref, kind or base
  if (!f && /^adapter .* (not found|has no version)/i.test(err.message)) return "generator";
  return null;
}

/** The transfer form's field an API error is about; ``target`` is the target base as sent. */
function transferFieldFor(err, target) {
  const f = Loom.errorField(err);
  if (f === "base_model") return /target base/i.test(err.message) ? "target_base" : "source";
  if (f === "sources") return "source";
  if (f && f in TRANSFER_INPUTS) return f;
  if (f) return "params"; // a Trans-LoRA parameter names itself
  if (/^base model /i.test(err.message)) return target && err.message.includes(target) ? "target_base" : "source";
  if (/^adapter .* (not found|has no version)/i.test(err.message)) return "source";
  return null;
}

document.addEventListener("DOMContentLoaded", () => {
  const genForm = document.getElementById("generate-form");
  const transForm = document.getElementById("transfer-form");
  if (!genForm || !transForm) return;
  const top = document.getElementById("form-errors");

  function clearErrors() {
    top.hidden = true; top.replaceChildren();
    for (const id of [...Object.values(GENERATE_INPUTS), ...Object.values(TRANSFER_INPUTS)]) {
      const box = document.getElementById("err-" + id);
      if (box) { box.hidden = true; box.textContent = ""; }
      const input = document.getElementById(id);
      if (input) input.removeAttribute("aria-invalid");
    }
  }
  function showField(inputs, field, message) {
    const box = document.getElementById("err-" + inputs[field]);
    box.textContent = message; box.hidden = false;
    const input = document.getElementById(inputs[field]);
    if (input) input.setAttribute("aria-invalid", "true");
    return input || box;
  }
  const showTop = Loom.alertIn(top);
  const jobs = Loom.jobFollower(showTop);
  const lines = (s) => s.split("\n").map((x) => x.trim()).filter(Boolean);
  const visibility = (form) => form.querySelector("input[name=visibility]:checked").value;

  function generateBody() {
    const el = genForm.elements;
    const errors = [];
    const b = { generator: el.generator.value.trim(), task: el.task.value.trim(), samples: lines(el.samples.value),
      visibility: visibility(genForm) };
    if (!b.generator) errors.push(["generator", "Name a generator: namespace/name or namespace/name@version."]);
    if (!b.task) errors.push(["task", "Describe the task."]);
    const seed = el.seed.value.trim();
    if (seed && !/^-?\d+$/.test(seed)) errors.push(["seed", "The seed must be a whole number, got " + JSON.stringify(seed) + "."]);
    else b.seed = seed ? parseInt(seed, 10) : 0;
    const name = el.name.value.trim(); if (name) b.name = name;
    return [b, errors];
  }

  function transferBody() {
    const el = transForm.elements;
    const errors = [];
    const b = { source: el.source.value.trim(), target_base: el.target_base.value.trim(), visibility: visibility(transForm) };
    if (!b.source) errors.push(["source", "Name the adapter to move: namespace/name or namespace/name@version."]);
    if (!b.target_base) errors.push(["target_base", "Name the base model to move it to."]);
    const p = el.params.value.trim();
    if (p) {
      try {
        b.params = JSON.parse(p);
        if (typeof b.params !== "object" || Array.isArray(b.params) || b.params === null) throw new Error("not an object");
      } catch (e) { errors.push(["params", "Parameters must be a JSON object, e.g. {\"student_steps\": 300}"]); }
    }
    const name = el.name.value.trim(); if (name) b.name = name;
    return [b, errors];
  }

  /** One form's submit: check in the page, POST, map 4xx errors to the fields, then follow the job. */
  function wire(form, { url, build, inputs, fieldFor, submitId, absent }) {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors();
      const [b, errors] = build();
      if (errors.length) { errors.map(([f, m]) => showField(inputs, f, m))[0].focus(); return; }
      const submit = document.getElementById(submitId);
      submit.disabled = true;
      let resp, data;
      try {
        resp = await Loom.api(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(b) });
        data = await Loom.readJson(resp);
      } catch (e) { showTop("Could not reach the hub: " + e.message); return; } finally { submit.disabled = false; }
      if (resp.status === 404 && /no route/i.test(Loom.errorOf(resp, data).message)) { showTop(absent); return; }
      if (!resp.ok) {
        const err = Loom.errorOf(resp, data);
        const f = fieldFor(err, b);
        if (f) showField(inputs, f, err.message).focus();
        else showTop(err.message, err.code === "unauthenticated" ? Loom.el("p", {}, Loom.el("a", { href: "/signin", text: "Sign in with a token" })) : null);
        return;
      }
      jobs.start(data);
    });
  }

  wire(genForm, { url: "/api/v1/generations", build: generateBody, inputs: GENERATE_INPUTS, fieldFor: generateFieldFor,
    submitId: "generate-submit", absent: "Generation is not available on this hub yet." });
  wire(transForm, { url: "/api/v1/transfers", build: transferBody, inputs: TRANSFER_INPUTS,
    fieldFor: (err, b) => transferFieldFor(err, b.target_base), submitId: "transfer-submit",
    absent: "Moving adapters is not available on this hub yet." });
  jobs.resume();
});
