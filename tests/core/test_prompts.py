"""The training paths prompt a base the way Loom serves it: its chat template when it has one, else prompt + newline.

A chat base here is the testbed byte tokenizer with another chat template (``[U] ... [A]``), so the chat-templated
ids and the completion-format ids differ: a codec, objective or router training that ignored the template would
give the completion ids.
"""

from __future__ import annotations

import pytest

from hub.core.prompts import answer_ids, prompt_ids, served_text

CHAT = "{{ bos_token }}{% for m in messages %}[U] {{ m['content'] }}\n{% endfor %}[A] "


@pytest.fixture()
def chat_tok():
    from testbed.tokenizer import build_tokenizer

    tok = build_tokenizer()
    tok.chat_template = CHAT
    return tok


@pytest.fixture()
def plain_tok():
    from testbed.tokenizer import build_tokenizer

    tok = build_tokenizer()
    tok.chat_template = None
    return tok


def templated(tok, text):
    return tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True)["input_ids"]


def test_a_chat_base_gets_its_template_and_a_plain_base_the_prompt_and_a_newline(chat_tok, plain_tok):
    x = "ab | shout this"
    assert prompt_ids(chat_tok, x) == templated(chat_tok, x) == [257, *b"[U] ab | shout this\n[A] "]
    assert prompt_ids(plain_tok, x) == plain_tok(x + "\n")["input_ids"] == [257, *x.encode(), 10]
    assert prompt_ids(chat_tok, x, chat=False) == prompt_ids(plain_tok, x)  # forced completion format
    assert answer_ids(chat_tok, "AB") == [65, 66, 258]
    assert served_text(chat_tok, x) == "[U] ab | shout this\n[A] "  # what a served router decodes and reads


def test_the_testbed_template_writes_the_zoo_format_so_tiny_bases_keep_their_ids():
    from testbed.tokenizer import build_tokenizer
    from testbed.train import prompt_ids as zoo_prompt_ids

    tok = build_tokenizer()
    assert tok.chat_template
    for x in ("hello | shout this", "x1y | hide the numbers"):
        assert prompt_ids(tok, x) == prompt_ids(tok, x, chat=False) == zoo_prompt_ids(x)


def test_the_generators_codec_uses_the_chat_template(chat_tok, plain_tok):
    from generation.taskvec import TextCodec

    x = "ab | shout this"
    assert TextCodec(chat_tok).prompt(x) == templated(chat_tok, x)
    assert TextCodec(chat_tok).prompt(x) != TextCodec(plain_tok).prompt(x) == [257, *x.encode(), 10]
    assert TextCodec(chat_tok, chat=False).prompt(x) == TextCodec(plain_tok).prompt(x)
    assert TextCodec(chat_tok).answer("AB") == [65, 66, 258]


def test_the_lorahub_objective_scores_chat_templated_prompts(chat_tok):
    from hub.services.composition_objective import ServedPrompts

    served = ServedPrompts(chat_tok)
    assert served("ab | x")["input_ids"] == templated(chat_tok, "ab | x")
    assert served("ab | x\n")["input_ids"] == templated(chat_tok, "ab | x")  # its newline is the suffix, kept once
    assert served("AB", add_special_tokens=False)["input_ids"] == [65, 66]


def test_router_training_in_the_served_format_reads_the_template(chat_tok):
    from routing.train import TrainConfig, _examples, _format

    data = [[{"input": "ab | x", "output": "AB"}], [{"input": "cd | y", "output": "cd"}]]
    items = _examples(data, 2, _format(chat_tok, served=True), TrainConfig())
    ids, labels, task, text, raw = items[0]
    p = templated(chat_tok, "ab | x")
    assert ids == p + [65, 66, 258] and labels == [-100] * len(p) + [65, 66, 258]
    assert (task, text, raw) == (0, "[U] ab | x\n[A] ", "ab | x")
    raw_items = _examples(data, 2, _format(chat_tok, served=False), TrainConfig())
    assert raw_items[0][0] == [*b"ab | x", *b"AB"]  # the raw format (no template, no EOS) is still there
