/* Publish page: send the form to POST /api/v1/adapters (multipart) with the user's token and show each
   error next to its field. The API's errors are {"error": {"code", "message", "details"}}. */
"use strict";

const FIELDS = ["name", "config", "weights", "readme", "samples", "description", "tags", "license", "visibility"];
const INPUT_OF = { name: "f-name", config: "f-config", weights: "f-weights", readme: "f-readme", samples: "f-samples",
  description: "f-description", tags: "f-tags", license: "f-license", visibility: null };
const ALIASES = { name: "name", namespace: "name", "adapter_config.json": "config", adapter_config: "config",
  "adapter_model.safetensors": "weights", adapter_model: "weights", "adapter_model.bin": "weights",
  "README.md": "readme", readme: "readme", "samples.jsonl": "samples", samples: "samples",
  description: "description", tags: "tags", tag: "tags", license: "license", visibility: "visibility" };
/* Which field a message is about, by the first file or field it names. */
const MENTIONS = [
  [/adapter_config\.json|peft_type|target_modules|base_model_name_or_path/i, "config"],
  [/adapter_model\.(safetensors|bin)|safetensors|pickle|\btensor\b|\bmodule '|lora_[AB]|base model/i, "weights"],
  [/samples\.jsonl/i, "samples"],
  [/README\.md/i, "readme"],
  [/^description\b/i, "description"],
  [/^(\d+ )?tags?\b/i, "tags"],
  [/^license\b/i, "license"],
  [/^visibility\b/i, "visibility"],
  [/^(name|namespace)\b|^the name\b|belongs to/i, "name"],
];

function fieldFor(err) {
  const d = err.details || {};
  if (typeof d.field === "string" && ALIASES[d.field]) return ALIASES[d.field];
  if (Array.isArray(d.errors) && d.errors.length) {
    const loc = d.errors[0].loc || [];
    const key = loc.length > 1 ? String(loc[1]) : "";
    if (ALIASES[key]) return ALIASES[key];
  }
  if (err.code === "unauthenticated" || err.code === "payload_too_large" && /request body/i.test(err.message)) return null;
  let best = null, bestAt = Infinity;
  for (const [re, field] of MENTIONS) {
    const m = re.exec(err.message);
    if (m && m.index < bestAt) { best = field; bestAt = m.index; }
  }
  return best;
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("publish-form");
  if (!form) return;
  const top = document.getElementById("form-errors");
  const result = document.getElementById("publish-result");
  const progress = document.getElementById("publish-progress");
  const submit = document.getElementById("publish-submit");

  function clearErrors() {
    top.hidden = true; top.replaceChildren();
    for (const f of FIELDS) {
      const box = document.getElementById("err-" + f);
      box.hidden = true; box.textContent = "";
      const input = INPUT_OF[f] && document.getElementById(INPUT_OF[f]);
      if (input) input.removeAttribute("aria-invalid");
    }
  }
  function showField(field, message) {
    const box = document.getElementById("err-" + field);
    box.textContent = message; box.hidden = false;
    const input = INPUT_OF[field] && document.getElementById(INPUT_OF[field]);
    if (input) input.setAttribute("aria-invalid", "true");
    return input || box;
  }
  function showTop(message, withSignin) {
    top.replaceChildren(Loom.el("p", { text: message }));
    if (withSignin) top.append(Loom.el("p", {}, Loom.el("a", { href: "/signin", text: "Sign in with a token" })));
    top.hidden = false;
    return top;
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors();
    result.hidden = true; result.replaceChildren();
    const fd = new FormData();
    const name = form.querySelector("#f-name").value.trim();
    const files = { config: form.querySelector("#f-config").files[0], weights: form.querySelector("#f-weights").files[0],
      readme: form.querySelector("#f-readme").files[0], samples: form.querySelector("#f-samples").files[0] };
    const missing = [];
    if (!name || name.endsWith("/")) missing.push(["name", "Give the adapter a name: namespace/name."]);
    if (!files.config) missing.push(["config", "Choose the adapter_config.json file."]);
    if (!files.weights) missing.push(["weights", "Choose the adapter_model.safetensors file."]);
    if (missing.length) {
      const first = missing.map(([f, m]) => showField(f, m))[0];
      first.focus();
      return;
    }
    fd.append("name", name);
    fd.append("adapter_config.json", files.config, "adapter_config.json");
    fd.append("adapter_model.safetensors", files.weights, files.weights.name);
    if (files.readme) fd.append("README.md", files.readme, "README.md");
    if (files.samples) fd.append("samples.jsonl", files.samples, "samples.jsonl");
    for (const key of ["description", "license"]) {
      const v = form.elements[key].value.trim();
      if (v) fd.append(key, v);
    }
    const tags = form.elements.tags.value.trim();
    if (tags) fd.append("tags", tags);
    fd.append("visibility", form.querySelector("input[name=visibility]:checked").value);

    submit.disabled = true; progress.textContent = "Uploading…";
    form.setAttribute("aria-busy", "true");
    let resp, body;
    try {
      resp = await Loom.api("/api/v1/adapters", { method: "POST", body: fd });
      body = await Loom.readJson(resp);
    } catch (e) {
      showTop("Could not reach the hub: " + e.message).focus();
      return;
    } finally {
      submit.disabled = false; progress.textContent = ""; form.removeAttribute("aria-busy");
    }
    if (!resp.ok) {
      const err = Loom.errorOf(resp, body);
      const field = fieldFor(err);
      if (field) showField(field, err.message).focus();
      else showTop(err.message, err.code === "unauthenticated").focus();
      return;
    }
    const a = body.adapter, v = body.version;
    const href = "/a/" + a.namespace + "/" + a.name + "?version=" + v.number;
    const msg = body.created ? "Published " : "Already published (identical content): ";
    result.replaceChildren(Loom.el("p", {}, msg, Loom.el("a", { href: href, id: "published-link", text: a.id + " version " + v.number })));
    for (const w of body.warnings || []) result.append(Loom.el("p", { class: "muted", text: "Note: " + w }));
    result.hidden = false;
    result.focus();
  });
});
