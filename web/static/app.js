/* Loom web UI: shared helpers (token, API calls, copy buttons, sign in/out). No build step, no dependencies. */
"use strict";

const Loom = (() => {
  const KEY = "loom_token";

  function token() {
    try { return window.localStorage.getItem(KEY) || ""; } catch (e) { return ""; }
  }
  function setToken(t) {
    try { if (t) window.localStorage.setItem(KEY, t); else window.localStorage.removeItem(KEY); } catch (e) { /* private mode */ }
  }

  /** fetch() with the stored token as Authorization: Bearer. */
  function api(url, opts) {
    const o = Object.assign({}, opts || {});
    o.headers = Object.assign({ Accept: "application/json" }, o.headers || {});
    const t = token();
    if (t && !o.headers.Authorization) o.headers.Authorization = "Bearer " + t;
    o.credentials = "same-origin";
    return fetch(url, o);
  }

  /** Read a response body as the hub's error shape {"error": {code, message, details}} when it is one. */
  async function readJson(resp) {
    const text = await resp.text();
    try { return JSON.parse(text); } catch (e) { return { raw: text }; }
  }
  function errorOf(resp, body) {
    const err = body && body.error;
    if (err && typeof err === "object") {
      return { code: err.code || ("http_" + resp.status), message: err.message || String(err), details: err.details || {} };
    }
    if (err && typeof err === "string") return { code: "http_" + resp.status, message: err, details: {} };
    if (body && typeof body.detail === "string") return { code: "http_" + resp.status, message: body.detail, details: {} };
    const raw = body && body.raw ? String(body.raw).slice(0, 300) : "";
    return { code: "http_" + resp.status, message: "HTTP " + resp.status + " " + (resp.statusText || "") + (raw ? ": " + raw : ""), details: {} };
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v; else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  /** The request field an API error names (``details.field`` or a validation error's location), or null. */
  function errorField(err) {
    const d = err.details || {};
    let f = typeof d.field === "string" ? d.field : null;
    if (!f && Array.isArray(d.errors) && d.errors.length) {
      const loc = d.errors[0].loc || [];
      f = loc.length > 1 ? String(loc[1]) : null;
    }
    return f === "namespace" ? "name" : f;
  }

  /** A function that shows a message (and an optional extra node) in alert box ``box`` and focuses it. */
  function alertIn(box) {
    return (message, extra) => {
      box.replaceChildren(el("p", { text: message }));
      if (extra) box.append(extra);
      box.hidden = false; box.focus();
    };
  }

  /** Field errors of a form whose inputs ``ids`` each have an ``err-<id>`` paragraph: ``show(id, message)``
   * marks the input invalid, shows the message and returns the input; ``clear()`` hides them all. */
  function fieldErrors(ids) {
    const show = (id, message) => {
      const e = document.getElementById("err-" + id); e.textContent = message; e.hidden = false;
      const input = document.getElementById(id); input.setAttribute("aria-invalid", "true"); return input;
    };
    const clear = () => {
      for (const id of ids) {
        document.getElementById(id).removeAttribute("aria-invalid");
        const e = document.getElementById("err-" + id); e.hidden = true; e.textContent = "";
      }
    };
    return { show, clear };
  }

  function initCopy() {
    const status = document.getElementById("copy-status");
    document.querySelectorAll("button[data-copy]").forEach((btn) => {
      btn.addEventListener("click", async () => {
        const src = document.getElementById(btn.dataset.copy);
        if (!src) return;
        const text = src.textContent;
        let ok = false;
        try { await navigator.clipboard.writeText(text); ok = true; } catch (e) {
          const range = document.createRange(); range.selectNodeContents(src);
          const sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
          try { ok = document.execCommand("copy"); } catch (e2) { ok = false; }
        }
        btn.textContent = ok ? "Copied" : "Select and copy";
        if (status) status.textContent = ok ? "Copied to the clipboard" : "Copy failed: the text is selected, press Ctrl+C";
        setTimeout(() => { btn.textContent = "Copy"; }, 2000);
      });
    });
  }

  function initSignin() {
    const form = document.getElementById("signin-form");
    if (!form) return;
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const input = form.querySelector("#token");
      const errBox = form.querySelector("#token-error");
      const value = input.value.trim();
      const fail = (msg) => {
        errBox.textContent = msg; errBox.hidden = false;
        input.setAttribute("aria-invalid", "true");
        input.setAttribute("aria-describedby", "token-help token-error");
        input.focus();
      };
      if (!value) { fail("Paste an API token."); return; }
      let resp;
      try {
        resp = await fetch("/api/v1/whoami", { headers: { Authorization: "Bearer " + value, Accept: "application/json" } });
      } catch (e) { fail("Could not reach the hub: " + e.message); return; }
      if (!resp.ok) { fail(errorOf(resp, await readJson(resp)).message); return; }
      setToken(value);
      form.submit(); // the server sets the HttpOnly cookie for server-rendered pages
    });
  }

  function initSignout() {
    document.querySelectorAll("form[data-signout]").forEach((f) => f.addEventListener("submit", () => setToken("")));
  }

  /** Links to private files: fetch with the token and save the blob (a plain link carries no token). */
  function initAuthDownloads() {
    document.querySelectorAll("a[data-auth-download]").forEach((a) => {
      a.addEventListener("click", async (ev) => {
        ev.preventDefault();
        const resp = await api(a.getAttribute("href"), { headers: { Accept: "*/*" } });
        if (!resp.ok) { alert(errorOf(resp, await readJson(resp)).message); return; }
        const url = URL.createObjectURL(await resp.blob());
        const tmp = el("a", { href: url, download: a.getAttribute("download") || "" });
        document.body.append(tmp); tmp.click(); tmp.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10000);
      });
    });
  }

  document.addEventListener("DOMContentLoaded", () => { initCopy(); initSignin(); initSignout(); initAuthDownloads(); });
  return { token, setToken, api, readJson, errorOf, errorField, el, alertIn, fieldErrors };
})();
window.Loom = Loom;
