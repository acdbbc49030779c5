#!/usr/bin/env python3
"""Loads a Gradus checkpoint into the plain-PyTorch Llama of scripts/gradus_torch.py and prints the
mean next-token cross-entropy it gets, as one JSON object, so that it can be compared with Gradus's.

    check-torch-loads-checkpoint.py CHECKPOINT --data IDS.safetensors
        IDS.safetensors holds "input_ids" and "targets", (B, T) i64.
    check-torch-loads-checkpoint.py CHECKPOINT --text FILE [--context N]
        FILE's bytes (the byte tokenizer: token = byte) cut into non-overlapping windows of N
        tokens (default max_position_embeddings), inputs [s, s + N) and targets [s + 1, s + N], a
        final partial window dropped, as `gradus eval` does.

Prints {"loss": <nats>, "bits_per_byte": <loss / ln 2>, "tokens": <targets scored>}.
The model is built from the checkpoint's metadata (Hugging Face LlamaConfig keys); the weights are
taken by name as they are (nn.Linear layout), in the checkpoint's dtype; any missing, extra or
mis-shaped tensor is an error. A tied checkpoint (no lm_head.weight) re-ties the head.

Needs PyTorch (Debian/Ubuntu: `sudo apt-get install python3-torch`, then use /usr/bin/python3).
"""

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gradus_torch as gt  # noqa: E402  (exits with install instructions when torch is missing)
import torch  # noqa: E402


def load(path):
    tensors, meta = gt.load_safetensors(path)
    cfg = gt.Config.from_metadata(meta, source=path)
    weights = {n: t for n, t in tensors.items()
               if not n.startswith("optimizer.") and not n.startswith("training.")}
    dtype = weights["model.embed_tokens.weight"].dtype if "model.embed_tokens.weight" in weights \
        else torch.float32
    model = gt.LlamaLM(cfg).to(dtype)
    model.load_checkpoint_tensors(weights, path)
    return model.eval(), cfg


def text_windows(path, context):
    with open(path, "rb") as f:
        data = torch.tensor(list(f.read()), dtype=torch.int64)
    n = (data.numel() - 1) // context
    if n < 1:
        raise SystemExit(f"{path}: {data.numel()} bytes do not fill one window of {context} + 1")
    starts = torch.arange(n) * context
    idx = starts[:, None] + torch.arange(context)[None, :]
    return data[idx], data[idx + 1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="safetensors file with input_ids and targets (B, T) i64")
    src.add_argument("--text", help="a text file, scored byte by byte")
    ap.add_argument("--context", type=int, help="window length for --text")
    args = ap.parse_args()

    torch.set_num_threads(1)
    model, cfg = load(args.checkpoint)
    if args.data:
        tensors, _ = gt.load_safetensors(args.data)
        ids, targets = tensors["input_ids"], tensors["targets"]
    else:
        ids, targets = text_windows(args.text, args.context or cfg.max_position_embeddings)
    for name, t in (("input ids", ids), ("targets", targets)):
        if t.numel() and (t.min() < 0 or t.max() >= cfg.vocab_size):
            raise SystemExit(f"{name} must lie in [0, {cfg.vocab_size}) for {args.checkpoint}, "
                             f"found values in [{t.min().item()}, {t.max().item()}]")
    with torch.no_grad():
        # Mean over every target: batches of windows summed, then divided once.
        total, count = 0.0, 0
        for b in range(0, ids.shape[0], 16):
            logits = model(ids[b:b + 16])
            total += torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).double(), targets[b:b + 16].reshape(-1),
                reduction="sum").item()
            count += targets[b:b + 16].numel()
    loss = total / count
    print(json.dumps({"loss": loss, "bits_per_byte": loss / math.log(2), "tokens": count}))


if __name__ == "__main__":
    main()
