"""The README's memory table: computed GPU memory to fine-tune Llama-2 7B/13B, full, LoRA and QLoRA.

    python benchmarks/memory_table.py [--seq-len 2048] [--batch-size 1]

Parameter counts are exact (the real architectures on the meta device); bytes per parameter and the
activation model are in `medtune_utils.memory`. Every cell is computed, none measured.
"""

from __future__ import annotations

import argparse

import pandas as pd

from medtune_utils import memory
from medtune_utils.modeling import meta_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=1)
    args = parser.parse_args()
    models = {f"Llama-2-{size.upper()}": meta_model(f"meta-llama/Llama-2-{size}-hf") for size in ("7b", "13b")}
    sizes = {"seq_len": args.seq_len, "batch_size": args.batch_size}
    print(f"one GPU, {args.batch_size} x {args.seq_len} tokens per step, gradient checkpointing; all cells computed\n")
    print(pd.DataFrame(memory.fits_table(models, **sizes)).to_markdown(index=False))
    print("\nfull fine-tune sharded over 8 GPUs (FSDP full shard or ZeRO-3), per GPU:")
    for name, model in models.items():
        print(f"  {name}: {memory.estimate(model, 'full', shards=8, **sizes).total:.1f} GiB")


if __name__ == "__main__":
    main()
