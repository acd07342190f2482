"""Does a router over the testbed zoo's ``upper`` and ``lower`` route the zoo's phrasings? Against a running hub.

Asks ``--model`` (a router over zoo/upper and zoo/lower, e.g. the README demo's ``demo/router``) for
``"<input> | <cue>"`` on 8 inputs x every cue of both tasks, greedy, through ``/v1/completions``, and counts the
answers equal to the task's own (upper or lower case of the input), split into the training cues (those the
experts' ``samples.jsonl`` can hold) and the held-out ones. The baseline, in the same run: each prompt sent to its
own task's adapter (the router's ceiling: what routing every prompt right would answer).

    LOOM_TOKEN=... python benchmarks/demo_router.py --url http://127.0.0.1:8000 --model demo/router
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testbed.tasks import format_prompt, get_task  # noqa: E402

INPUTS = ("hello", "HeLLo", "AbCd", "abc1", "QwErTy", "zz9", "Mixed", "x-Y-z")
EXPERTS = {"upper": "zoo/upper", "lower": "zoo/lower"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default=os.environ.get("LOOM_SERVER_URL", "http://127.0.0.1:8000"))
    p.add_argument("--model", default="demo/router")
    args = p.parse_args()
    headers = {"Authorization": f"Bearer {os.environ.get('LOOM_TOKEN', '')}"}

    def answer(model: str, prompt: str) -> str:
        r = httpx.post(f"{args.url}/v1/completions", headers=headers, timeout=120,
                       json={"model": model, "prompt": prompt + "\n", "max_tokens": 10, "temperature": 0})
        if r.status_code != 200:
            sys.exit(f"{model}: HTTP {r.status_code}: {r.text[:300]}")
        return str(r.json()["choices"][0]["text"]).strip()

    right = {(who, split): [0, 0] for who in ("router", "own expert") for split in ("train", "heldout")}
    misses = []
    for name, expert in EXPERTS.items():
        task = get_task(name)
        for split in ("train", "heldout"):
            for cue in task.all_cues(split):
                for x in INPUTS:
                    prompt, want = format_prompt(x, cue), task.fn(x)
                    for who, model in (("router", args.model), ("own expert", expert)):
                        ok = answer(model, prompt) == want
                        right[who, split][0] += ok
                        right[who, split][1] += 1
                        if who == "router" and not ok:
                            misses.append(prompt)
    print(f"{args.model} over {', '.join(EXPERTS.values())}: right answers, greedy, {len(INPUTS)} inputs per cue")
    print(f"{'':12} {'training cues':>14} {'held-out cues':>14}")
    for who in ("router", "own expert"):
        cells = [f"{right[who, s][0]}/{right[who, s][1]}" for s in ("train", "heldout")]
        print(f"{who:12} {cells[0]:>14} {cells[1]:>14}")
    for s in ("train", "heldout"):
        r, o = right["router", s][0], right["own expert", s][0]
        print(f"router / own expert, {s} cues: {r / o if o else float('nan'):.2f}x")
    print("router misses:", ", ".join(repr(m) for m in misses) or "none")


if __name__ == "__main__":
    main()
