"""The prompt format of a base: the token ids an adapter on that base is trained on and served with.

Loom's training paths (Trans-LoRA's teacher labels and student, SG/ICM-LoRA task vectors, the ``router_train``
job, the ``lorahub`` objective) give a prompt to a base the way Loom serves a request on it:

- a base whose tokenizer has a **chat template** (SmolLM2-135M-Instruct, the testbed's tiny bases): the template
  with one user message and the generation prompt, encoded without adding special tokens (the template writes
  them), exactly the ids ``/v1/chat/completions`` and transformers' ``apply_chat_template`` give the model. The
  real zoo's adapters are trained on these ids (:mod:`testbed.real.train`); the testbed tokenizer's template
  writes ``<s>prompt\\n``, the format its zoo was trained on, so both ways give a tiny base the same ids;
- a base without one (the Gemma 3 270M GGUF, say): ``tokenizer(prompt + "\\n")``, the completion convention
  (``prompt`` then a newline, with whatever BOS the tokenizer adds itself, as ``/v1/completions`` encodes it).

Answers are the answer text without special tokens, then EOS (the template's end of turn on chat bases).
"""

from __future__ import annotations

from typing import Any

#: what follows a prompt on a base without a chat template (the testbed zoo's completion format)
PROMPT_SUFFIX = "\n"


def has_chat_template(tokenizer: Any) -> bool:
    """True when ``tokenizer`` carries a chat template (the base is prompted through it)."""
    return bool(getattr(tokenizer, "chat_template", None))


def chat_prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """The ids a chat model is given for one user message (the chat template with the generation prompt)."""
    out = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                        tokenize=True)
    ids = out["input_ids"] if hasattr(out, "keys") else out
    return [int(i) for i in ids]


def prompt_ids(tokenizer: Any, prompt: str, *, chat: bool | None = None, suffix: str = PROMPT_SUFFIX) -> list[int]:
    """The ids ``prompt`` is given to a base as: chat-templated, or ``tokenizer(prompt + suffix)``.

    Args:
        chat: True/False force the chat template / the completion format; None (default) uses the template when
            the tokenizer has one.
        suffix: what follows the prompt in the completion format.
    """
    if chat if chat is not None else has_chat_template(tokenizer):
        return chat_prompt_ids(tokenizer, prompt)
    return [int(i) for i in tokenizer(prompt + suffix)["input_ids"]]


def answer_ids(tokenizer: Any, answer: str) -> list[int]:
    """The ids of an answer as an adapter is trained to write it: the text (no special tokens), then EOS."""
    return [int(i) for i in tokenizer(answer, add_special_tokens=False)["input_ids"]] + [int(tokenizer.eos_token_id)]


def served_text(tokenizer: Any, prompt: str, *, chat: bool | None = None, suffix: str = PROMPT_SUFFIX) -> str:
    """The request text a served router reads (embeds, matches): the prompt's ids decoded without special tokens,
    as the inference service decodes a request (a chat base's template text, the prompt and its newline else)."""
    return str(tokenizer.decode(prompt_ids(tokenizer, prompt, chat=chat, suffix=suffix), skip_special_tokens=True))
