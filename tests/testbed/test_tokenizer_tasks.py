"""Tokenizer round trip and the task zoo's definitions (no training)."""

from __future__ import annotations

import pytest

from hub.core.errors import InvalidInputError, UnknownNameError
from testbed.tasks import TASKS, composite_examples, get_task, tasks_for
from testbed.tokenizer import build_tokenizer, save_tokenizer


def test_tokenizer_bytes_and_specials_round_trip(tmp_path):
    from transformers import AutoTokenizer

    tok = build_tokenizer()
    text = "Hello, wörld! 123 | SHOUT"
    ids = tok(text)["input_ids"]
    assert ids == [257, *text.encode("utf-8")]  # BOS from the tokenizer itself, as the bases were trained
    assert tok(text, add_special_tokens=False)["input_ids"] == ids[1:]
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (256, 257, 258)
    save_tokenizer(tmp_path)
    tok2 = AutoTokenizer.from_pretrained(str(tmp_path))
    assert tok2.padding_side == "left"
    assert tok2(text)["input_ids"] == ids
    assert tok2.decode(ids, skip_special_tokens=True) == text
    batch = tok2(["a", "abc"], padding=True)["input_ids"]
    assert batch[0][:3] == [256, 256, 257]  # left padding


def test_chat_template_writes_the_zoo_prompt_format(tmp_path):
    """The chat template gives what the zoo trained on: <s> + "<input> | <cue>" + newline; system dropped."""
    from transformers import AutoTokenizer

    from testbed.train import prompt_ids

    save_tokenizer(tmp_path)
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    msgs = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "hello | shout this"}]
    text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert text == "<s>hello | shout this\n"
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True)["input_ids"]
    assert ids == prompt_ids("hello | shout this") == tok("hello | shout this\n")["input_ids"]


def test_cached_zoo_tokenizers_are_upgraded_in_place(tmp_path):
    """A base saved with the tokenizer of before (no BOS post-processor, no chat template) is rewritten."""
    import json

    from transformers import AutoTokenizer

    from testbed.tokenizer import is_current, upgrade_tokenizer

    save_tokenizer(tmp_path)
    body = json.loads((tmp_path / "tokenizer.json").read_text())
    body["post_processor"] = None
    (tmp_path / "tokenizer.json").write_text(json.dumps(body))
    (tmp_path / "chat_template.jinja").unlink()
    old = AutoTokenizer.from_pretrained(str(tmp_path))
    assert old("ab")["input_ids"] == [97, 98] and not is_current(tmp_path)
    assert upgrade_tokenizer(tmp_path) and is_current(tmp_path) and not upgrade_tokenizer(tmp_path)
    new = AutoTokenizer.from_pretrained(str(tmp_path))
    assert new("ab")["input_ids"] == [257, 97, 98] and new.chat_template
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp folder left


def test_zoo_has_enough_tasks_with_cards_cues_and_families():
    assert len(TASKS) >= 16 and len(tasks_for("ci")) >= 16
    for t in TASKS.values():
        assert len(t.description) > 40 and t.tags
        assert len(t.cues) >= 3 and len(t.heldout_cues) >= 2
        assert not set(t.cues) & set(t.heldout_cues)
    families = {t.family for t in TASKS.values() if t.family}
    assert len(families) >= 2
    for fam in families:
        members = [t for t in TASKS.values() if t.family == fam]
        assert any(m.held_out for m in members) and sum(not m.held_out for m in members) >= 2
        assert len({m.description for m in members}) == len(members)
    assert all(t.min_size == "ci" for t in tasks_for("ci"))
    assert any(t.min_size == "full" for t in tasks_for("full"))


def test_mask_first_k_masks_a_prefix_of_k_characters():
    assert [get_task(f"mask_first_{k}").fn("ab3,Zq") for k in (1, 3, 5)] == ["*b3,Zq", "***,Zq", "*****q"]
    assert get_task("mask_first_5").fn("abc") == "***"  # shorter than k: masked entirely
    held = [t.name for t in TASKS.values() if t.family == "mask_first" and t.held_out]
    assert held == ["mask_first_3"] and not get_task("mask_first_3").composable


def test_examples_are_seeded_and_never_identity():
    t = get_task("caesar_2")
    a, b = t.examples(20, 3), t.examples(20, 3)
    assert a == b and a != t.examples(20, 4)
    for e in a:
        assert e.output != e.input and e.output == t.fn(e.input)
        assert e.prompt.startswith(e.input + " | ")
    assert get_task("caesar_2").fn("xyZ!") == "zaB!"
    assert get_task("digit_add_3").fn("a98") == "a21"
    assert get_task("leetspeak").fn("toast") == "70457"
    assert get_task("repeat_3").fn("ab") == "aaabbb"
    heldout = t.examples(10, 0, "heldout")
    assert all(any(e.prompt.endswith(c) for c in t.heldout_cues) for e in heldout)


def test_composites_chain_tasks_in_order():
    exs = composite_examples(10, 3, seed=0)
    assert len(exs) == 10
    for e in exs:
        cues = e.prompt.split(" | ", 1)[1].split(", then ")
        assert len(cues) == 3
        y = e.input
        for cue in cues:
            task = next(t for t in tasks_for("ci") if cue in t.all_cues() and t.composable and not t.held_out)
            y = task.fn(y)
        assert y == e.output


def test_bad_names_and_sizes_are_domain_errors():
    with pytest.raises(UnknownNameError, match="known"):
        get_task("nope")
    with pytest.raises(InvalidInputError):
        tasks_for("huge")
    with pytest.raises(InvalidInputError):
        composite_examples(1, 5, 0)
    with pytest.raises(InvalidInputError):
        get_task("upper").all_cues("test")
