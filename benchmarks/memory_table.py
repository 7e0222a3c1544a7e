"""The README's memory table: computed GPU memory to fine-tune Llama-2 7B/13B, full, LoRA and QLoRA.

    python benchmarks/memory_table.py [--seq-len 2048] [--batch-size 1] [--gpus 8]

Parameter counts are exact (the real architectures on the meta device); bytes per parameter and the
activation model are in `medtune_utils.memory`. Every cell is computed, none measured.
"""

from __future__ import annotations

import argparse

import pandas as pd

from medtune_utils import memory
from medtune_utils.config import load_profile
from medtune_utils.modeling import meta_model

FULL_PROFILES = {"Llama-2-7B": "llama2-7b", "Llama-2-13B": "llama2-13b"}
METHOD_NAMES = {"full": "full", "lora": "LoRA", "qlora": "QLoRA"}


def sharded_rows(models: dict[str, object], gpus: int, seq_len: int) -> list[dict[str, str]]:
    """Per-GPU memory of each full fine-tune profile sharded over `gpus` GPUs, at its own per-device batch.

    Two columns: gradients synced every micro-batch (what `medtune_utils.train` sets under FSDP) and, for comparison,
    the Trainer's default `no_sync` accumulation, under which FSDP2 keeps the whole model's bf16 gradients on each GPU.
    """
    rows = []
    for name, model in models.items():
        batch = load_profile(FULL_PROFILES[name]).train.per_device_train_batch_size
        sizes = {"shards": gpus, "batch_size": batch, "seq_len": seq_len}
        synced = memory.estimate(model, "full", **sizes).total
        unsynced = memory.estimate(model, "full", accumulate_unsharded=True, **sizes).total
        rows.append(
            {
                "model": name,
                "per-GPU batch": f"{batch} x {seq_len}",
                f"per GPU on {gpus} GPUs (sync each micro-batch)": f"{synced:.1f} GiB",
                "with no_sync accumulation": f"{unsynced:.1f} GiB",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--gpus", type=int, default=8, help="GPUs a full fine-tune is sharded over")
    args = parser.parse_args()
    models = {name: meta_model(load_profile(profile).model.base) for name, profile in FULL_PROFILES.items()}
    sizes = {"seq_len": args.seq_len, "batch_size": args.batch_size}
    print(f"one GPU, {args.batch_size} x {args.seq_len} tokens per step, gradient checkpointing; all cells computed\n")
    table = pd.DataFrame(memory.fits_table(models, **sizes)).replace({"method": METHOD_NAMES})
    print(table.to_markdown(index=False))
    print(f"\nfull fine-tune sharded over {args.gpus} GPUs (FSDP2 full shard; ZeRO-3 without the FSDP working set):\n")
    print(pd.DataFrame(sharded_rows(models, args.gpus, args.seq_len)).to_markdown(index=False))


if __name__ == "__main__":
    main()
