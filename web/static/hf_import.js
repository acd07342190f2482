/* Publish page, second form: import an adapter from the Hugging Face Hub via POST /api/v1/hf/import. */
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("hf-form");
  if (!form) return;
  const top = document.getElementById("hf-errors");
  const result = document.getElementById("hf-result");
  const FIELDS = { repo: "h-repo", revision: "h-repo", name: "h-name", namespace: "h-name", visibility: "h-visibility" };

  const fields = Loom.fieldErrors(["h-repo", "h-name", "h-visibility"]);
  const clear = () => { top.hidden = true; top.replaceChildren(); result.hidden = true; result.replaceChildren(); fields.clear(); };
  const showField = fields.show, showTop = Loom.alertIn(top);
  const fieldOf = (err) => {
    const d = err.details || {};
    if (typeof d.field === "string" && FIELDS[d.field]) return FIELDS[d.field];
    if (Array.isArray(d.errors) && d.errors.length) {
      const loc = d.errors[0].loc || []; const key = loc.length > 1 ? String(loc[1]) : "";
      if (FIELDS[key]) return FIELDS[key];
    }
    if (d.repo_id || /^repo(_id)?\b/i.test(err.message) || err.code === "upstream_error") return "h-repo";
    return null;
  };

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clear();
    const repo = form.elements.repo.value.trim();
    if (!repo) { showField("h-repo", "Give the repository, e.g. org/my-lora.").focus(); return; }
    const body = { repo: repo };
    const name = form.elements.name.value.trim(); if (name) body.name = name;
    const vis = form.elements.visibility.value; if (vis) body.visibility = vis;
    const submit = document.getElementById("hf-submit"), progress = document.getElementById("hf-progress");
    submit.disabled = true; progress.textContent = "Importing…";
    let resp, data;
    try {
      resp = await Loom.api("/api/v1/hf/import", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      data = await Loom.readJson(resp);
    } catch (e) { showTop("Could not reach the hub: " + e.message); return; } finally { submit.disabled = false; progress.textContent = ""; }
    if (!resp.ok) {
      const err = Loom.errorOf(resp, data);
      if (resp.status === 404 && /no route/i.test(err.message)) { showTop("Importing from the Hugging Face Hub is not available on this hub yet."); return; }
      const f = fieldOf(err);
      if (f) showField(f, err.message).focus();
      else showTop(err.message, err.code === "unauthenticated" ? Loom.el("p", {}, Loom.el("a", { href: "/signin", text: "Sign in with a token" })) : null);
      return;
    }
    const items = data.items || [];
    const failed = items.filter((i) => i.status === "failed");
    if (failed.length && items.length === 1) { showField("h-repo", (failed[0].error && failed[0].error.message) || "the import failed").focus(); return; }
    for (const it of items) {
      const p = Loom.el("p", {}, it.repo_id + ": " + it.status + " ");
      if (it.adapter && it.version) p.append(Loom.el("a", { class: "hf-link", href: "/a/" + it.adapter.id + "?version=" + it.version.number, text: it.adapter.id + " version " + it.version.number }));
      if (it.error) p.append(" " + it.error.message);
      result.append(p);
      for (const w of it.warnings || []) result.append(Loom.el("p", { class: "muted", text: "Note: " + w }));
    }
    result.hidden = false; result.focus();
  });
});
