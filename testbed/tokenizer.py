"""A byte-level tokenizer built locally with the ``tokenizers`` library (no downloads).

Every UTF-8 byte is one token (ids 0-255, no merges), plus ``<pad>`` (256), ``<s>`` (257) and
``</s>`` (258): 259 ids in all. It is wrapped in ``PreTrainedTokenizerFast`` with left padding,
so it saves with ``save_pretrained`` and loads back with ``AutoTokenizer.from_pretrained(dir)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
VOCAB_SIZE = 259


def build_tokenizer() -> Any:
    """The testbed tokenizer (a ``PreTrainedTokenizerFast``), padding on the left."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
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
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        padding_side="left",
        model_max_length=512,
    )


def save_tokenizer(folder: str | Path) -> Path:
    """Write the tokenizer files into ``folder`` (created if needed) and return it."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    build_tokenizer().save_pretrained(str(d))
    return d


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
