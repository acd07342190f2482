/* Shared by the pages that queue jobs (compose, generate): show a job in the #job card and follow
   GET /api/v1/jobs/{id} until it finishes; cancel with DELETE; resume a job named by ?job= in the URL. */
"use strict";

(() => {
  const TERMINAL = ["succeeded", "failed", "cancelled"];

  /**
   * Bind the job card of this page (#job, #job-id, #job-status, #job-progress, #job-percent, #job-message,
   * #job-log, #job-result, #job-cancel).
   *
   * Args: showTop(message): shows a general error on the page (a failed poll or cancel).
   * Returns: { start(job): follow a just-queued job and put ?job=<id> in the URL; follow(job, dedup); resume() }.
   */
  function jobFollower(showTop) {
    const $ = (id) => document.getElementById(id);
    const jobBox = $("job");
    let timer = null;

    function render(job, dedup) {
      jobBox.hidden = false;
      $("job-id").textContent = job.id;
      $("job-status").textContent = job.status + (dedup ? " (the same recipe was already submitted)" : "");
      const pct = Math.round((job.progress || 0) * 100);
      $("job-progress").value = job.progress || 0;
      $("job-percent").textContent = pct + "%";
      const ahead = (job.ahead || []).map((a) => a.kind + " " + a.status + (a.status === "running" ? " " + Math.round(a.progress * 100) + "%" : "")).join(", ");
      $("job-message").textContent = job.position
        ? "Queued: #" + job.position + " in line" + (ahead ? "; ahead: " + ahead + "." : "; next to run.")
        : (job.message || "");
      $("job-log").replaceChildren(...(job.log || []).map((l) => Loom.el("li", { text: l })));
      const result = $("job-result");
      $("job-cancel").hidden = TERMINAL.includes(job.status);
      if (job.status === "succeeded" && job.result_name) {  // ns/name@version of an adapter, router or generator
        const r = job.result || {};
        const [name, version] = job.result_name.split("@");
        result.className = "success";
        result.replaceChildren(Loom.el("p", {}, "Published ", Loom.el("a", { id: "job-result-link", href: "/a/" + name + "?version=" + version, text: job.result_name }),
          r.method ? " with " + r.method + "." : "."));
        if (r.reason) result.append(Loom.el("p", { class: "muted", text: "Why this method: " + r.reason }));
      } else if (job.status === "failed") {
        result.className = "alert";
        result.replaceChildren(Loom.el("p", { text: "The job failed: " + ((job.error && job.error.message) || job.message) }));
      } else if (job.status === "cancelled") {
        result.className = "notice";
        result.replaceChildren(Loom.el("p", { text: "Cancelled; nothing was published." }));
      } else { result.className = ""; result.replaceChildren(); }
    }

    async function follow(job, dedup) {
      render(job, dedup);
      if (timer) clearTimeout(timer);
      if (TERMINAL.includes(job.status)) return;
      timer = setTimeout(async () => {
        try {
          const resp = await Loom.api("/api/v1/jobs/" + encodeURIComponent(job.id));
          const data = await Loom.readJson(resp);
          if (!resp.ok) { showTop(Loom.errorOf(resp, data).message); return; }
          follow(data, dedup);
        } catch (e) { timer = setTimeout(() => follow(job, dedup), 2000); }
      }, 600);
    }

    function start(job) {
      history.replaceState(null, "", location.pathname + "?job=" + encodeURIComponent(job.id));
      follow(job, job.deduplicated);
    }

    $("job-cancel").addEventListener("click", async () => {
      const id = $("job-id").textContent;
      const resp = await Loom.api("/api/v1/jobs/" + encodeURIComponent(id), { method: "DELETE" });
      const data = await Loom.readJson(resp);
      if (!resp.ok) { showTop(Loom.errorOf(resp, data).message); return; }
      follow(data, false);
    });

    async function resume() {
      const initial = new URLSearchParams(location.search).get("job");
      if (!initial) return;
      const resp = await Loom.api("/api/v1/jobs/" + encodeURIComponent(initial));
      const data = await Loom.readJson(resp);
      if (resp.status === 404 && /no route/i.test(Loom.errorOf(resp, data).message)) { showTop("Jobs are not available on this hub yet."); return; }
      if (!resp.ok) { showTop(Loom.errorOf(resp, data).message); return; }
      follow(data, false);
    }

    return { start, follow, resume };
  }

  window.Loom.jobFollower = jobFollower;
})();
