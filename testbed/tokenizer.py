"""A byte-level tokenizer built locally with the ``tokenizers`` library (no downloads).

Every UTF-8 byte is one token (ids 0-255, no merges), plus ``<pad>`` (256), ``<s>`` (257) and
``</s>`` (258): 259 ids in all. It is wrapped in ``PreTrainedTokenizerFast`` with left padding,
so it saves with ``save_pretrained`` and loads back with ``AutoTokenizer.from_pretrained(dir)``.

Like Llama's, it puts ``<s>`` first itself (a post-processor; ``add_special_tokens=False`` leaves it
out), so ``tokenizer(prompt)`` is what the testbed trains on and what a served model is given: Loom,
PEFT and vLLM all rely on the tokenizer for BOS. Its chat template writes the zoo's prompt format: each
user message is ``"<content>\n"`` (the zoo's ``"<input> | <cue>"`` plus the newline the bases were
trained to answer after), an assistant message is ``"<content></s>"``, system messages are dropped
(the tiny bases know no instructions); the template starts with ``<s>``, so chat prompts are encoded
with ``add_special_tokens=False`` as transformers' ``apply_chat_template`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
VOCAB_SIZE = 259
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ message['content'] + '\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% endif %}"
    "{% endfor %}"
)


def build_tokenizer() -> Any:
    """The testbed tokenizer (a ``PreTrainedTokenizerFast``), padding on the left."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    # order the 256 byte symbols by the byte they stand for, so id == byte value
    table = _bytes_to_unicode()
    vocab = {table[b]: b for b in range(256)}
    assert set(vocab) == set(byte_chars)
    vocab.update({PAD: 256, BOS: 257, EOS: 258})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([PAD, BOS, EOS])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, 257)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        padding_side="left",
        model_max_length=512,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def is_current(folder: str | Path) -> bool:
    """True when the tokenizer saved in ``folder`` is this version's (BOS post-processor and chat template)."""
    import json

    d = Path(folder)
    try:
        body = json.loads((d / "tokenizer.json").read_text())
    except (OSError, ValueError):
        return False
    template = d / "chat_template.jinja"
    return body.get("post_processor") is not None and template.is_file() and template.read_text() == CHAT_TEMPLATE


def save_tokenizer(folder: str | Path) -> Path:
    """Write the tokenizer files into ``folder`` (created if needed) and return it."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    build_tokenizer().save_pretrained(str(d))
    return d


def upgrade_tokenizer(folder: str | Path) -> bool:
    """Rewrite an older tokenizer saved in ``folder`` (no BOS post-processor or chat template) as this one.

    Only the tokenizer files change: the testbed always trained with ``<s>`` first, so a base trained with
    the older tokenizer answers the same prompts the same way. Each file is replaced atomically (two
    processes upgrading the same zoo write the same bytes). Returns True when something was rewritten.
    """
    import os
    import shutil
    import tempfile

    d = Path(folder)
    if is_current(d) or not (d / "tokenizer.json").is_file():
        return False
    tmp = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=d))
    try:
        save_tokenizer(tmp)
        for f in tmp.iterdir():
            os.replace(f, d / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable unicode table (the symbols ByteLevel pre-tokenisation emits)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}
