"""The one greedy decoder (``generation.decode.decode_ids``, which ``testbed.generate.greedy`` wraps):
token-identical to transformers' ``generate`` on left-padded batches, with PEFT's per-row adapters, and
on the current Cache API (no FutureWarning from our decoding)."""

from __future__ import annotations

import copy
import warnings

import torch

from generation.decode import decode_ids

ROWS = [[1, 5, 9, 12, 7, 33], [1, 3, 4], [1, 60, 2, 8], [1, 17]]
STOP = 2  # an "EOS" id the pico model emits now and then


def _reference(model, row, new, **kw):
    """Greedy ids of ``generate`` on one unpadded row, up to (not including) the first stop id."""
    ids = torch.tensor([row])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, do_sample=False,
                         eos_token_id=STOP, pad_token_id=0, **kw)[0, len(row):].tolist()
    keep = []
    for t in out:
        if t in (0, STOP):
            break
        keep.append(t)
    return keep


def _decode_without_future_warnings(model, **kw):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        got = decode_ids(model, ROWS, pad_id=0, stop_ids=(STOP,), max_new_tokens=8, batch_size=3, **kw)
    future = [str(w.message) for w in seen if issubclass(w.category, FutureWarning)]
    assert not future, future
    return got


def test_greedy_equals_generate_row_by_row_and_warns_nothing(tiny_model):
    got = _decode_without_future_warnings(tiny_model)
    with torch.no_grad():
        assert got == [_reference(tiny_model, r, 8) for r in ROWS]
    assert any(len(g) < 8 for g in got)  # a row hit the stop id: the stop path ran


def test_forward_kwargs_are_sliced_per_batch_like_the_rows(tiny_model, peft_adapter_dir):
    """PEFT's ``adapter_names`` (one per row) follow their rows across batches."""
    from peft import PeftModel

    pm = PeftModel.from_pretrained(copy.deepcopy(tiny_model), str(peft_adapter_dir), adapter_name="a").eval()
    names = ["a", "__base__", "__base__", "a"]
    got = _decode_without_future_warnings(pm, adapter_names=names)
    with torch.no_grad():
        want = [_reference(pm, r, 8, adapter_names=[n]) for r, n in zip(ROWS, names, strict=True)]
    assert got == want
    assert got != _decode_without_future_warnings(tiny_model)  # the adapter changes the answers


def test_sampling_is_deterministic_for_a_generator(tiny_model):
    def run():
        g = torch.Generator().manual_seed(4)
        return decode_ids(tiny_model, ROWS, pad_id=0, stop_ids=(STOP,), max_new_tokens=6, temperature=0.7,
                          generator=g)

    assert run() == run()
