"""``model: auto`` represents an adapter by its card AND its sample prompts (spec routers §8.2)."""

from __future__ import annotations

import json

import pytest

from hub.services.publish import PublishFiles
from tests.inference.conftest import BASE_ID

#: two adapters whose cards say the same vague thing (names differ by a digit); only their samples differ
CARD = "A helpful text adapter."
SAMPLES = {
    "dana/helper-1": ["How long should I boil an egg?", "Give me a recipe for tomato soup.",
                     "What spices go well with roast chicken?"],
    "dana/helper-2": ["Will it rain tomorrow in Paris?", "What is the forecast for the weekend?",
                     "How strong will the wind be this afternoon?"],
}
PROMPT = "Suggest a quick pasta dinner recipe with garlic."


def _publish_with_samples(hub, folder, name, prompts):
    user = hub.users.ensure_user(name.split("/")[0])
    rows = "".join(json.dumps({"input": p, "output": "ok"}) + "\n" for p in prompts).encode()
    files = PublishFiles(config=(folder / "adapter_config.json").read_bytes(),
                         weights=folder / "adapter_model.safetensors", samples=rows)
    hub.publisher.publish(user, name, files, description=CARD, tags=[])


@pytest.mark.parametrize("exemplars", [True, False])
def test_auto_uses_sample_prompts_when_cards_do_not_differ(ihub, adapter_dirs, exemplars):
    from hub.services.container import inference_service
    from hub.services.inference import CompletionRequest

    for (name, prompts), folder in zip(SAMPLES.items(), ("alice/math", "bob/python"), strict=True):
        _publish_with_samples(ihub, adapter_dirs[folder], name, prompts)
    ihub.settings.semantic_router_exemplars = exemplars
    ihub.settings.semantic_router_threshold = -1.0  # always route; this test is about which adapter wins
    svc = inference_service(ihub, "cpu")
    try:
        res = svc.complete(None, CompletionRequest(model=f"{BASE_ID}:auto", prompts=[PROMPT], max_tokens=2,
                                                   temperature=0.0))
    finally:
        svc.close()
    c = res.choices[0]
    cooking, weather = c.scores["dana/helper-1"], c.scores["dana/helper-2"]
    if exemplars:
        assert list(c.adapters) == ["dana/helper-1@1"], c.scores
        assert cooking > weather + 0.05, c.scores
    else:  # cards that differ by one digit of the name: nearly the same score, nothing to tell them apart
        assert abs(cooking - weather) < 0.02, c.scores
