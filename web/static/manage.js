/* Adapter page, owner only: PATCH description/tags/license/visibility, or DELETE the adapter. */
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("manage-form");
  if (!form) return;
  const url = "/api/v1/adapters/" + form.dataset.adapter;
  const top = document.getElementById("manage-errors");
  const FIELDS = ["description", "tags", "license", "visibility"];
  const clear = () => {
    top.hidden = true; top.replaceChildren();
    for (const f of FIELDS) {
      const e = document.getElementById("err-m-" + f); e.hidden = true; e.textContent = "";
      document.getElementById("m-" + f).removeAttribute("aria-invalid");
    }
  };
  const show = (err) => {
    const d = err.details || {};
    let f = typeof d.field === "string" ? d.field : null;
    if (!f && Array.isArray(d.errors) && d.errors.length) { const loc = d.errors[0].loc || []; f = String(loc[loc.length > 1 ? 1 : 0] || ""); }
    if (!f) { const m = /^(description|tags?|license|visibility)\b/i.exec(err.message); if (m) f = m[1].toLowerCase().replace(/^tag$/, "tags"); }
    if (f && FIELDS.includes(f)) {
      const e = document.getElementById("err-m-" + f); e.textContent = err.message; e.hidden = false;
      const input = document.getElementById("m-" + f); input.setAttribute("aria-invalid", "true"); input.focus();
    } else {
      top.replaceChildren(Loom.el("p", { text: err.message })); top.hidden = false; top.focus();
    }
  };

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clear();
    const body = {
      description: form.elements.description.value,
      tags: form.elements.tags.value.split(",").map((t) => t.trim()).filter(Boolean),
      visibility: form.elements.visibility.value,
    };
    const lic = form.elements.license.value.trim();
    if (lic) body.license = lic;
    const resp = await Loom.api(url, { method: "PATCH", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const data = await Loom.readJson(resp);
    if (!resp.ok) { show(Loom.errorOf(resp, data)); return; }
    location.reload();
  });

  document.getElementById("m-delete").addEventListener("click", async () => {
    if (!window.confirm("Delete " + form.dataset.adapter + " and all its versions? This cannot be undone.")) return;
    clear();
    const resp = await Loom.api(url, { method: "DELETE" });
    if (!resp.ok) { show(Loom.errorOf(resp, await Loom.readJson(resp))); return; }
    location.assign("/?deleted=" + encodeURIComponent(form.dataset.adapter));
  });
});
