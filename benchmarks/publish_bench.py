"""Publish throughput: rank-16 LoRA adapters shaped like a 7B model, through the service layer.

Each adapter targets q_proj and v_proj of 32 layers at hidden size 4096 (Llama-2-7B shapes; 33.5 MB
in float32), with random weights, so no two adapters share content. The same run measures two
baselines on the same files: ``safetensors.save_file`` of the same tensors (what writing the
adapter costs at all) and a raw file copy (the floor of moving the bytes into a store). Publishing
adds: hashing, header checks, loading and validating every tensor (finite, ranks, key names), the
shape check against the registered 7B base, the embedding of the description, the blob writes with
fsync, and the DB transaction.

    python benchmarks/publish_bench.py            # 8 adapters, SQLite in a temp dir
    python benchmarks/publish_bench.py --n 16 --database-url postgresql+psycopg://postgres@127.0.0.1:5432/x
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file


def make_tensors(seed: int, layers: int, hidden: int, rank: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i in range(layers):
        for proj in ("q_proj", "v_proj"):
            key = f"base_model.model.model.layers.{i}.self_attn.{proj}"
            out[f"{key}.lora_A.weight"] = torch.randn(rank, hidden, generator=g) * 0.01  # (r, in)
            out[f"{key}.lora_B.weight"] = torch.randn(hidden, rank, generator=g) * 0.01  # (out, r)
    return out


def config(rank: int, base: str) -> dict:
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": 2 * rank,
            "target_modules": ["q_proj", "v_proj"], "base_model_name_or_path": base, "bias": "none"}


def timed(fn, items) -> list[float]:
    times = []
    for it in items:
        t0 = time.perf_counter()
        fn(it)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=8, help="adapters per measurement")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--database-url", default=None, help="default: SQLite in the temp data dir")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch's; 1 avoids spin-waiting on a loaded machine)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import LlamaConfig

    from hub.services.container import Hub
    from hub.services.publish import PublishFiles
    from hub.settings import get_settings

    base_id = "bench/llama-2-7b"
    base_cfg = LlamaConfig(hidden_size=args.hidden, intermediate_size=11008, num_hidden_layers=args.layers,
                           num_attention_heads=32, num_key_value_heads=32, vocab_size=32000).to_dict()
    root = Path(tempfile.mkdtemp(prefix="loom-publish-bench-"))
    try:
        src = root / "src"
        folders, tensor_sets = [], []
        for i in range(args.n + 1):  # +1 for the warm-up publish
            t = make_tensors(i, args.layers, args.hidden, args.rank)
            d = src / f"a{i}"
            d.mkdir(parents=True)
            (d / "adapter_config.json").write_text(json.dumps(config(args.rank, base_id)))
            save_file(t, str(d / "adapter_model.safetensors"))
            folders.append(d)
            tensor_sets.append(t)
        size = (folders[0] / "adapter_model.safetensors").stat().st_size
        print(f"adapter: rank {args.rank}, q_proj+v_proj x {args.layers} layers, hidden {args.hidden}: "
              f"{size / 1e6:.1f} MB float32; {args.n} adapters per row")

        settings = get_settings(data_dir=root / "data", database_url=args.database_url)
        hub = Hub(settings)
        hub.base_models.register(base_id, json.dumps(base_cfg).encode())
        user = hub.users.ensure_user("bench")

        def publish(i: int) -> None:
            d = folders[i]
            hub.publisher.publish(user, f"bench/adapter-{i}", PublishFiles(
                config=(d / "adapter_config.json").read_bytes(), weights=d / "adapter_model.safetensors"),
                description=f"benchmark adapter number {i} for a 7B model", tags=["bench"])

        publish(0)  # warm-up: embedder load, base shapes on the meta device
        items = list(range(1, args.n + 1))
        out_dir = root / "baseline"
        out_dir.mkdir()

        def save(i: int) -> None:
            p = out_dir / f"s{i}.safetensors"
            save_file(tensor_sets[i], str(p))
            with open(p, "rb+") as f:
                os.fsync(f.fileno())

        def copy(i: int) -> None:
            p = out_dir / f"c{i}.safetensors"
            shutil.copyfile(folders[i] / "adapter_model.safetensors", p)
            with open(p, "rb+") as f:
                os.fsync(f.fileno())

        rows = [("safetensors.save_file + fsync", timed(save, items)),
                ("raw file copy + fsync", timed(copy, items)),
                ("loom publish (service layer)", timed(publish, items))]
        hub.close()
        publish_rate = len(items) / sum(rows[2][1])
        print(f"{'method':34s} {'adapters/s':>10s} {'MB/s':>8s} {'p50 ms':>8s} {'max ms':>8s} {'publish/this':>12s}")
        for label, ts in rows:
            rate = len(ts) / sum(ts)
            print(f"{label:34s} {rate:10.2f} {rate * size / 1e6:8.1f} {statistics.median(ts) * 1e3:8.1f} "
                  f"{max(ts) * 1e3:8.1f} {publish_rate / rate:12.2f}")
        print(f"database: {hub.engine.dialect.name}; CPU threads: {torch.get_num_threads()}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
