/* Jobs page: the caller's jobs from GET /api/v1/jobs (newest first), refreshed while any is unfinished;
   says so cleanly when the hub has no jobs API. */
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("jobs");
  if (!box) return;
  const TERMINAL = ["succeeded", "failed", "cancelled"];
  const say = (text, cls, extra) => {
    box.replaceChildren(Loom.el("p", { class: cls || "muted", text: text }));
    if (extra) box.append(extra);
    box.setAttribute("aria-busy", "false");
  };

  // what runs or waits ahead of a queued job, in words
  const aheadText = (j) => !j.position ? "" : "#" + j.position + " in line" + ((j.ahead || []).length
    ? "; ahead: " + j.ahead.map((a) => a.kind + " " + a.status + (a.status === "running" ? " " + Math.round(a.progress * 100) + "%" : "")).join(", ")
    : "; next to run");

  async function load() {
    let resp, body;
    try {
      resp = await Loom.api("/api/v1/jobs");
      body = await Loom.readJson(resp);
    } catch (e) { say("Could not reach the hub: " + e.message, "alert"); return; }
    if (resp.status === 404) { say("Jobs are not available on this hub yet.", "notice"); return; }
    if (!resp.ok) {
      const err = Loom.errorOf(resp, body);
      if (resp.status === 401) say("Sign in to see your jobs.", "notice", Loom.el("p", {}, Loom.el("a", { href: "/signin", text: "Sign in" })));
      else say(err.message, "alert");
      return;
    }
    const items = Array.isArray(body) ? body : (body.items || []);
    if (!items.length) {
      say("No jobs yet.", "muted", Loom.el("p", {}, Loom.el("a", { href: "/compose", text: "Compose an adapter" })));
      return;
    }
    const rows = items.map((j) => {
      const pct = Math.round((j.progress || 0) * 100);
      const progress = Loom.el("progress", { max: "100", value: String(pct), "aria-label": "progress of job " + j.id }, pct + "%");
      const r = j.result;
      const name = j.result_name || (r && r.adapter ? r.adapter + "@" + r.version : "");
      const result = name ? Loom.el("a", { href: "/a/" + name.split("@")[0] + "?version=" + name.split("@")[1], text: name })
        : (j.error && j.error.message) || "";
      return Loom.el("tr", {},
        Loom.el("th", { scope: "row" }, Loom.el("a", { href: "/compose?job=" + encodeURIComponent(j.id), text: j.id.slice(0, 8) })),
        Loom.el("td", { text: j.kind }), Loom.el("td", { text: j.position ? j.status + " #" + j.position : j.status, title: aheadText(j) }), Loom.el("td", {}, progress),
        Loom.el("td", { text: (j.created_at || "").replace("T", " ").slice(0, 19) }), Loom.el("td", {}, result));
    });
    const head = Loom.el("tr", {}, ...["Job", "Kind", "Status", "Progress", "Created (UTC)", "Result"].map((h) => Loom.el("th", { scope: "col", text: h })));
    box.replaceChildren(Loom.el("div", { class: "table-scroll" }, Loom.el("table", { class: "jobs" }, Loom.el("thead", {}, head), Loom.el("tbody", {}, ...rows))));
    box.setAttribute("aria-busy", "false");
    if (items.some((j) => !TERMINAL.includes(j.status))) setTimeout(load, 2000);
  }
  load();
});
