"""The playground in the browser: validation next to the fields, the server's own answer shown (an error
while the pico base has no weights on this hub), and the rendering of adapters used and gate weights."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect

from tests.web.conftest import sign_in


def test_playground_shows_the_servers_answer(page, live, artifacts):
    sign_in(page, live.alice)
    page.goto("/playground?model=alice/news-summariser@1")
    model = page.get_by_label("Model")
    expect(model).to_have_value("alice/news-summariser@1")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#err-prompt")).to_have_text("Write a message.")
    expect(page.get_by_label("Message")).to_be_focused()

    payload = {"model": "alice/news-summariser@1", "messages": [{"role": "user", "content": "Summarise: hi"}],
               "max_tokens": 8, "temperature": 0}
    direct = httpx.post(f"{live.url}/v1/chat/completions", json=payload,
                        headers={"Authorization": f"Bearer {live.alice}"}, timeout=60)
    page.get_by_label("Message").fill("Summarise: hi")
    page.get_by_label("Max tokens").fill("8")
    page.get_by_role("button", name="Send").click()
    if direct.status_code == 404 and direct.json()["error"]["message"].startswith("no route"):
        expect(page.locator("#play-errors")).to_contain_text("Inference is not available on this hub yet.")
    elif direct.status_code >= 400:
        msg = direct.json()["error"]["message"]
        expect(page.locator("#err-model, #play-errors").filter(has_text=msg)).to_have_count(1)
    else:
        expect(page.locator("#answer-text")).to_have_text(direct.json()["choices"][0]["message"]["content"])
    page.screenshot(path=str(artifacts / "playground.png"), full_page=True)


def test_playground_renders_adapters_and_gate_heatmap(page, live, artifacts):
    """Rendering of the response shape (routed answers come from the inference service, not built here):
    the browser receives this body for its request, and the page must show every number in it."""
    body = {
        "id": "chatcmpl-1", "object": "chat.completion", "model": "auto",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Bonjour -> Hello"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        "loom": {"route": "auto", "adapters": {"alice/french-english@1": 0.75, "alice/news-summariser@1": 0.25},
                 "experts": ["alice/french-english@1", "alice/news-summariser@1"],
                 "gate_weights": {"model.layers.0.self_attn.q_proj": [0.9, 0.1],
                                  "model.layers.1.self_attn.q_proj": [0.6, 0.4]}},
    }
    seen = []

    def answer(route):
        seen.append(route.request.post_data_json)
        route.fulfill(status=200, json=body)

    page.route("**/v1/chat/completions", answer)
    page.goto("/playground")
    page.get_by_label("Message").fill("Translate: Bonjour")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#answer-text")).to_have_text("Bonjour -> Hello")
    assert seen == [{"model": "auto", "messages": [{"role": "user", "content": "Translate: Bonjour"}],
                     "max_tokens": 64, "temperature": 0}]
    used = page.locator("table.adapters-used tbody tr")
    expect(used).to_have_count(2)
    expect(used.nth(0)).to_contain_text("alice/french-english@1")
    expect(used.nth(0)).to_contain_text("0.750")
    expect(used.nth(0).get_by_role("link")).to_have_attribute("href", "/a/alice/french-english")
    expect(page.locator("#answer-meta")).to_contain_text("5 in, 3 out")
    expect(page.locator("svg.heatmap rect")).to_have_count(4)
    assert page.locator("svg.heatmap rect").nth(0).get_attribute("fill-opacity") == "0.9"
    page.get_by_text("Gate weights as a table").click()
    expect(page.locator("table.gates tbody tr").nth(1)).to_contain_text("0.400")
    page.screenshot(path=str(artifacts / "playground-routed.png"), full_page=True)


def test_playground_and_try_it_answer_for_real(page, live, artifacts):
    """A registered base with weights: the answer, the adapter used and its weight come from the hub."""
    from tests.web.conftest import SERVED_ADAPTER, SERVED_BASE

    payload = {"model": f"{SERVED_ADAPTER}@1", "messages": [{"role": "user", "content": "Hello there"}],
               "max_tokens": 6, "temperature": 0}
    direct = httpx.post(f"{live.url}/v1/chat/completions", json=payload, timeout=120)
    assert direct.status_code == 200, direct.text
    want = direct.json()
    sign_in(page, live.alice)
    page.goto(f"/playground?model={SERVED_ADAPTER}@1")
    page.get_by_label("Message").fill("Hello there")
    page.get_by_label("Max tokens").fill("6")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#answer-text")).to_have_text(want["choices"][0]["message"]["content"], timeout=60_000)
    meta = page.locator("#answer-meta")
    expect(meta).to_contain_text(SERVED_BASE)
    expect(meta).to_contain_text(f"Route{want['loom']['route']}")
    used = page.locator("table.adapters-used tbody tr")
    expect(used).to_have_count(len(want["loom"]["adapters"]))
    key, weight = next(iter(want["loom"]["adapters"].items()))
    assert key.startswith(SERVED_ADAPTER)
    expect(used.first).to_contain_text(key)
    expect(used.first).to_contain_text(f"{weight:.3f}")
    page.screenshot(path=str(artifacts / "playground-answer.png"), full_page=True)

    # the adapter page's try-it box: a chat message, as the playground sends it; greedy, so a direct call's text
    body = {"model": SERVED_ADAPTER, "messages": [{"role": "user", "content": "Good morning"}], "max_tokens": 6,
            "temperature": 0}
    direct = httpx.post(f"{live.url}/v1/chat/completions", json=body, timeout=120)
    assert direct.status_code == 200, direct.text
    page.goto(f"/a/{SERVED_ADAPTER}")
    page.get_by_label("Prompt").fill("Good morning")
    page.get_by_label("Max tokens").fill("6")
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#try-output pre.completion")).to_have_text(direct.json()["choices"][0]["message"]["content"],
                                                                     timeout=60_000)
