"""Loom's testbed: tiny base models, a task zoo of PEFT LoRAs trained on CPU, and exact-match eval.

    from testbed.zoo import build_zoo
    from testbed.eval import evaluate, Oracle
    zoo = build_zoo("ci", "loom-data")              # cached under loom-data/testbed/<recipe-hash>/
    res = evaluate({"base": "base", "oracle": "oracle", "mine": my_generate_fn}, zoo=zoo, n=50)
    print(res.table()); open("eval.json", "w").write(res.to_json())

Modules: ``tokenizer`` (byte-level HF tokenizer), ``tasks`` (the zoo's tasks, cues, composites),
``models`` (recipes), ``train`` (pre-training and PEFT LoRA training), ``jobs`` (the build's
training jobs on one or more worker processes), ``generate`` (batched greedy decoding), ``zoo``
(build / manifest / publish), ``eval``, ``probe`` (prompt recognisability),
``commands`` (plain functions behind ``loom demo`` and ``loom eval``). Importing this package
imports nothing heavy.
"""
