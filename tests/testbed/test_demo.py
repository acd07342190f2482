"""``loom demo``'s hub side: the zoo's bases registered and its adapters published, searchable, idempotent."""

from __future__ import annotations

from hub.cli.testbed import publish_zoo_into


def test_zoo_is_published_into_a_hub_and_found_by_task(ci_zoo, tmp_path):
    from hub.services.container import Hub
    from hub.settings import get_settings

    with Hub(get_settings(data_dir=tmp_path / "data")) as hub:
        n_bases, n_adapters = publish_zoo_into(hub, ci_zoo)
        assert (n_bases, n_adapters) == (len(ci_zoo.bases), len(ci_zoo.adapters))
        assert {b.model_id for b in hub.base_models.list()} == {b.id for b in ci_zoo.bases}
        assert all(b.weights and (hub.base_models.get(b.model_id).weights) for b in hub.base_models.list())
        hits = hub.search.search(None, "make every letter a capital", k=3)
        assert hits[0].adapter.full_name == "zoo/upper"
        ver = hub.adapters.version(None, "zoo", "upper", None)
        assert "samples.jsonl" in ver.files and ver.base_model == ci_zoo.base_a.id
        # Running demo again publishes nothing new (identical content returns the existing versions).
        publish_zoo_into(hub, ci_zoo)
        assert hub.adapters.version(None, "zoo", "upper", None).number == 1


def test_demo_hub_serves_zoo_adapters_like_the_testbed_eval(ci_zoo, tmp_path):
    """The inference endpoint answers zoo prompts (``<input> | <cue>`` + newline) as the testbed's own decoding."""
    from peft import PeftModel

    from hub.services.container import Hub, inference_service
    from hub.services.inference import CompletionRequest
    from hub.settings import get_settings
    from testbed.generate import greedy
    from testbed.tasks import TASKS
    from testbed.train import load_base

    examples = TASKS["upper"].examples(8, seed=5)
    entry = ci_zoo.adapter("upper")
    expected = greedy(PeftModel.from_pretrained(load_base(ci_zoo.base_a.dir), str(entry.dir)).eval(),
                      [e.prompt for e in examples])
    assert sum(a == e.output for a, e in zip(expected, examples, strict=True)) >= 6  # the adapter works
    with Hub(get_settings(data_dir=tmp_path / "data")) as hub:
        publish_zoo_into(hub, ci_zoo)
        svc = inference_service(hub)
        try:
            res = svc.complete(None, CompletionRequest(model="zoo/upper", prompts=[e.prompt + "\n" for e in examples],
                                                       max_tokens=40, temperature=0.0))
        finally:
            svc.close()
    assert [c.text for c in res.choices] == expected
