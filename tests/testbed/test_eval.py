"""The eval API on the ci zoo: oracle above a floor, base below a ceiling, plug-in configurations."""

from __future__ import annotations

import json

import pytest

from hub.core.errors import InvalidInputError
from testbed.eval import Adapter, BaseModel, Oracle, evaluate
from testbed.tasks import get_task


def _solver(prompts):
    """A perfect single-task answerer: finds the task by its cue."""
    out = []
    for p in prompts:
        x, cue = p.split(" | ", 1)
        task = next(t for t in ("upper", "caesar_1", "digit_add_2") if cue in get_task(t).all_cues())
        out.append(get_task(task).fn(x))
    return out


def test_oracle_clears_floor_and_base_stays_below_ceiling(ci_zoo):
    res = evaluate(
        {
            "base": "base",
            "oracle": "oracle",
            "upper-everywhere": ci_zoo.adapter("upper"),
            "qwen2 oracle": Oracle("loom-testbed/qwen2-ci"),
        },
        zoo=ci_zoo,
        n=32,
    )
    assert res.tasks == ["upper", "caesar_1", "digit_add_2", "mask_first_2", "composite2", "composite3"]
    for t in ("upper", "caesar_1", "digit_add_2"):
        assert res.accuracy["oracle"][t] >= 0.8, res.table()
        assert res.accuracy["base"][t] <= 0.1, res.table()
    assert res.accuracy["oracle"]["composite2"] is None
    assert res.accuracy["upper-everywhere"]["upper"] >= 0.8
    assert res.accuracy["upper-everywhere"]["caesar_1"] <= 0.2
    assert (
        res.accuracy["qwen2 oracle"]["upper"] >= 0.7 and res.accuracy["qwen2 oracle"]["digit_add_2"] is None
    )
    body = json.loads(res.to_json())
    assert body["accuracy"]["oracle"]["upper"] == res.accuracy["oracle"]["upper"]
    assert body["mean"]["oracle"] == pytest.approx(res.mean("oracle"))
    text = res.table()
    assert "oracle" in text and "mean (tasks)" in text


def test_callables_and_lora_adapters_plug_in(ci_zoo):
    from hub.core.peft_io import load_peft

    res = evaluate(
        {
            "perfect": _solver,
            "empty": lambda ps: ["" for _ in ps],
            "lora object": Adapter(load_peft(ci_zoo.adapter("caesar_1").dir)),
            "base-b": BaseModel("loom-testbed/qwen2-ci"),
        },
        zoo=ci_zoo,
        n=16,
        tasks=["upper", "caesar_1"],
        split="heldout",
    )
    assert res.accuracy["perfect"] == {"upper": 1.0, "caesar_1": 1.0}
    assert res.accuracy["empty"] == {"upper": 0.0, "caesar_1": 0.0}
    assert res.accuracy["lora object"]["caesar_1"] >= 0.8
    assert res.accuracy["base-b"]["upper"] <= 0.1


def test_bad_configurations_are_domain_errors(ci_zoo):
    with pytest.raises(InvalidInputError):
        evaluate({}, zoo=ci_zoo)
    with pytest.raises(InvalidInputError, match="returned 1 answers"):
        evaluate({"short": lambda ps: ["x"]}, zoo=ci_zoo, n=4, tasks=["upper"])
    with pytest.raises(InvalidInputError):
        evaluate({"what": "not-a-config"}, zoo=ci_zoo, n=4, tasks=["upper"])
    with pytest.raises(InvalidInputError):
        evaluate({"base": "base"}, zoo=ci_zoo, n=0)


def test_run_eval_parses_cli_configs_and_writes_json(ci_zoo, tmp_path):
    import io

    from rich.console import Console

    from testbed.commands import parse_config_arg, run_eval

    assert isinstance(parse_config_arg("zoo:upper", ci_zoo), Adapter)
    assert parse_config_arg("base:loom-testbed/qwen2-ci", ci_zoo) == BaseModel("loom-testbed/qwen2-ci")
    with pytest.raises(InvalidInputError):
        parse_config_arg("nonsense", ci_zoo)
    out = io.StringIO()
    res = run_eval(
        None,
        configs=["base", "zoo:upper"],
        tasks=["upper"],
        n=8,
        json_out=tmp_path / "e.json",
        console=Console(file=out, width=120),
        zoo=ci_zoo,
    )
    body = json.loads((tmp_path / "e.json").read_text())
    assert body["accuracy"] == res.accuracy and body["accuracy"]["zoo:upper"]["upper"] >= 0.75
    assert "zoo:upper" in out.getvalue()


def test_an_adapter_folder_is_evaluated_on_its_own_base(ci_zoo, tmp_path):
    """#18.8: `loom eval -c <folder>` of a Qwen2 adapter scores it on Qwen2 (it scored 0% on base A)."""
    import shutil

    from hub.core.errors import NotFoundError
    from hub.core.peft_io import load_peft
    from testbed.commands import parse_config_arg

    base_b = ci_zoo.bases[1].id
    entry = ci_zoo.adapter("upper", base_b)
    folder = shutil.copytree(entry.dir, tmp_path / "pulled")  # what `loom pull` leaves
    lora = load_peft(folder)
    assert lora.base_model == base_b
    cfg = parse_config_arg(str(folder), ci_zoo)
    assert cfg.own_base(lora, ci_zoo) == base_b
    res = evaluate({"pulled": cfg}, zoo=ci_zoo, tasks=["upper"], n=20, composites=False)
    assert res.accuracy["pulled"]["upper"] >= 0.75, res.accuracy
    assert Adapter(folder, base_id=ci_zoo.bases[0].id).own_base(lora, ci_zoo) == ci_zoo.bases[0].id
    with pytest.raises(NotFoundError, match="which this zoo does not have"):
        Adapter(folder).own_base(lora.with_spec(base_model="other/base"), ci_zoo)
