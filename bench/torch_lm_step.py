#!/usr/bin/env python3
"""PyTorch side of the language-model training-step benchmark (BENCHMARKS.md workloads).

The same Llama-style decoder as Gradus's `gradus bench lm`: RMSNorm (eps 1e-5), RoPE (rotate_half,
base 1e4) on Q and K, causal softmax attention, SwiGLU, pre-norm residuals, untied head, no biases,
cross-entropy over all positions, random token ids, AdamW. Prints one JSON object like Gradus's.
Needs PyTorch (Debian: apt-get install python3-torch).
"""
import argparse
import json
import pathlib
import resource
import statistics
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit("torch_lm_step.py needs PyTorch: apt-get install python3-torch")

PRESETS = {
    "small": dict(vocab=256, d=256, heads=4, ff=688, layers=4, seq=128, batch=32),
    "medium": dict(vocab=50304, d=768, heads=12, ff=2048, layers=12, seq=1024, batch=16),
}

# The model is the parity tests' hand-written PyTorch Llama (scripts/gradus_torch.py).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "scripts"))
import gradus_torch  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small", choices=PRESETS)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    p = PRESETS[args.preset]
    torch.manual_seed(args.seed)
    model = gradus_torch.LlamaLM(gradus_torch.Config(
        vocab_size=p["vocab"], hidden_size=p["d"], num_attention_heads=p["heads"],
        intermediate_size=p["ff"], num_hidden_layers=p["layers"], max_position_embeddings=p["seq"]))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    ids = torch.randint(0, p["vocab"], (p["batch"], p["seq"] + 1))
    inputs, targets = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(inputs)
        loss = F.cross_entropy(logits.view(-1, p["vocab"]), targets.view(-1))
        loss.backward()
        opt.step()
        return loss.item()

    step()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ms = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        ms.append((time.perf_counter() - t0) * 1000.0)
    median = statistics.median(ms)
    tokens = p["batch"] * p["seq"]
    print(json.dumps({
        "framework": f"pytorch {torch.__version__}",
        "preset": args.preset, "threads": torch.get_num_threads(), "steps": args.steps,
        "ms_per_step": median, "step_ms": ms, "tokens_per_s": tokens / (median / 1000.0),
        # Peak resident set of the whole process (KiB -> bytes): an upper bound on tensor memory.
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_growth_bytes_during_timing": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) * 1024,
        "final_loss": loss,
    }))


if __name__ == "__main__":
    main()
