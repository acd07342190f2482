/* Adapter page: the "try it" box, calling the hub's OpenAI-compatible POST /v1/chat/completions (the prompt is one
   user message, rendered by the base's chat template as the playground does, so both give the same answer). */
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("try-form");
  const out = document.getElementById("try-output");
  if (!form || !out) return;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const prompt = form.querySelector("#try-prompt").value;
    const maxTokens = parseInt(form.querySelector("#try-max").value, 10) || 32;
    const button = form.querySelector("button[type=submit]");
    out.className = "output"; out.replaceChildren(Loom.el("p", { class: "muted", text: "Running…" }));
    if (!prompt.trim()) {
      out.className = "output error-box";
      out.replaceChildren(Loom.el("p", { text: "Write a prompt first." }));
      form.querySelector("#try-prompt").focus();
      return;
    }
    button.disabled = true;
    try {
      const resp = await Loom.api("/v1/chat/completions", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ model: form.dataset.model, messages: [{ role: "user", content: prompt }],
                               max_tokens: maxTokens, temperature: 0 }),
      });
      const body = await Loom.readJson(resp);
      if (!resp.ok) {
        const err = Loom.errorOf(resp, body);
        out.className = "output error-box";
        const lead = resp.status === 404 && /no route/i.test(err.message)
          ? "Inference is not available on this hub yet. " : "The hub could not run this adapter. ";
        out.replaceChildren(Loom.el("p", { text: lead }), Loom.el("p", { class: "server-msg", text: err.message }));
        return;
      }
      const choice = body && body.choices && body.choices[0];
      const text = choice ? (choice.message && choice.message.content) || "" : "";
      out.className = "output";
      out.replaceChildren(Loom.el("pre", { class: "completion" }, text));
    } catch (e) {
      out.className = "output error-box";
      out.replaceChildren(Loom.el("p", { text: "Could not reach the hub: " + e.message }));
    } finally {
      button.disabled = false;
    }
  });
});
