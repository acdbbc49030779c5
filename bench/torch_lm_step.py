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


def add_grading(model, cfg):
    """The graded kinds' fixed grading as `gradus bench lm --attention lgt|egt` runs it (default
    options: every grade fixed, the identity values; the cost does not depend on the values):
    Q and K projections scaled per output row (Phi applied to the weights, before RoPE), the
    embedding output and the feed-forward input scaled per channel (models/graded)."""
    from torch.nn.utils import parametrize

    C, H = cfg.hidden_size, cfg.num_attention_heads
    rows = torch.ones(H, C // H).reshape(C, 1)  # one row of grades shared by the heads
    channels = torch.ones(C)

    class RowScale(torch.nn.Module):
        def forward(self, w):
            return w * rows

    for block in model.model.layers:
        for proj in (block.self_attn.q_proj, block.self_attn.k_proj):
            parametrize.register_parametrization(proj, "weight", RowScale())
        block.mlp.register_forward_pre_hook(lambda m, args: (args[0] * channels,))
    model.model.embed_tokens.register_forward_hook(lambda m, args, out: out * channels)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small", choices=PRESETS)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--attention", default="std", choices=["std", "lgt", "egt", "gin", "pna"])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    p = PRESETS[args.preset]
    torch.manual_seed(args.seed)
    model = gradus_torch.LlamaLM(gradus_torch.Config(
        vocab_size=p["vocab"], hidden_size=p["d"], num_attention_heads=p["heads"],
        intermediate_size=p["ff"], num_hidden_layers=p["layers"], max_position_embeddings=p["seq"]))
    if args.attention in ("gin", "pna"):
        import torch_graph_attention  # bench/, beside this script

        torch_graph_attention.replace_attention(model, args.attention)
    elif args.attention != "std":
        add_grading(model, model.cfg)
    model = model.to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    ids = torch.randint(0, p["vocab"], (p["batch"], p["seq"] + 1), device=args.device)
    inputs, targets = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(inputs)
        loss = F.cross_entropy(logits.view(-1, p["vocab"]), targets.view(-1))
        loss.backward()
        opt.step()
        return loss.item()  # waits for the GPU: the step is timed whole

    step()
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
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
        "preset": args.preset, "attention": args.attention, "threads": torch.get_num_threads(),
        "steps": args.steps,
        "ms_per_step": median, "step_ms": ms, "tokens_per_s": tokens / (median / 1000.0),
        # Peak resident set of the whole process (KiB -> bytes): an upper bound on tensor memory.
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_growth_bytes_during_timing": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) * 1024,
        "final_loss": loss,
        "device": args.device,
        # GPU: the caching allocator's peak during the timed steps (Gradus reports the same).
        "peak_gpu_bytes": torch.cuda.max_memory_allocated() if args.device == "cuda" else 0,
    }))


if __name__ == "__main__":
    main()
