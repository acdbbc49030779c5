#!/usr/bin/env python3
"""PyTorch side of the language-model training-step benchmark (BENCHMARKS.md workloads).

The same Llama-style decoder as Gradus's `gradus bench lm`: RMSNorm (eps 1e-5), RoPE (rotate_half,
base 1e4) on Q and K, causal softmax attention, SwiGLU, pre-norm residuals, untied head, no biases,
cross-entropy over all positions, random token ids, AdamW. Prints one JSON object like Gradus's.
Needs PyTorch (Debian: apt-get install python3-torch).

PyTorch's faster forms, for the GPU comparison (bench/compare-gpu): --precision tf32|bf16 (bf16:
autocast mixed precision), --sdpa (fused attention, bench/torch_sdpa_attention.py), --compile
(torch.compile). A configuration this PyTorch cannot run (no SDPA or compile before 2.0, pna with
--sdpa) or that runs out of memory prints {"error": "..."} (exit status 3, or 4 for "OOM").
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
import torch_graph_attention  # noqa: E402  (bench/, beside this script)
import torch_sdpa_attention  # noqa: E402


def add_grading(model, cfg):
    """The graded kinds' fixed grading as `gradus bench lm --attention lgt|egt` runs it (default
    options: every grade fixed, the identity values; the cost does not depend on the values):
    Q and K projections scaled per output row (Phi applied to the weights, before RoPE), the
    embedding output and the feed-forward input scaled per channel (models/graded)."""
    from torch.nn.utils import parametrize

    C, H = cfg.hidden_size, cfg.num_attention_heads

    # The grades are buffers of the modules they scale, so that model.to(device) moves them.
    class RowScale(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("rows", torch.ones(H, C // H).reshape(C, 1))  # shared by the heads

        def forward(self, w):
            return w * self.rows

    for block in model.model.layers:
        for proj in (block.self_attn.q_proj, block.self_attn.k_proj):
            parametrize.register_parametrization(proj, "weight", RowScale())
        block.mlp.register_buffer("grade_channels", torch.ones(C))
        block.mlp.register_forward_pre_hook(lambda m, args: (args[0] * m.grade_channels,))
    model.model.embed_tokens.register_buffer("grade_channels", torch.ones(C))
    model.model.embed_tokens.register_forward_hook(lambda m, args, out: out * m.grade_channels)


def step_matmul_flops(p, kind, gamma=0.5):
    """Matrix-product FLOPs of one training step, the formula of Gradus's `bench lm`
    (step_matmul_gflop, experiments/lib/bench_lm.cpp), so both sides report the same figure:
    3 x forward, forward = 2 N P for every Linear of P weights (N = B L tokens) plus the attention
    products at 2 B L^2 C each per layer (q k^T and A v; pna also A v^2). The causal half of the
    attention products is not subtracted, as in Gradus's floor."""
    n, C, F_, V = p["batch"] * p["seq"], p["d"], p["ff"], p["vocab"]
    m = int(gamma * (C // p["heads"]))  # the graph kinds' per-head MLP width floor(gamma d_h)
    attn_weights, products = 4 * C * C, 4
    if kind == "gin":  # q, k; per-head MLP d_h -> m -> d_h; no V or O projection
        attn_weights = 2 * C * C + 2 * C * m
    elif kind == "pna":  # q, k, v, o; per-head MLP 4 d_h -> m -> d_h (sum, mean, max, var)
        attn_weights, products = 4 * C * C + C * m * (4 + 1), 6
    linear_weights = p["layers"] * (attn_weights + 3 * C * F_) + V * C
    attention = p["layers"] * products * p["batch"] * p["seq"] ** 2 * C
    return 3.0 * (2.0 * n * linear_weights + attention)


def fail(args, reason, status):
    """One JSON line saying why this configuration did not run (the harness shows it as n/a or
    OOM), instead of a traceback."""
    print(json.dumps({"framework": f"pytorch {torch.__version__}", "preset": args.preset,
                      "attention": args.attention, "device": args.device,
                      "precision": args.precision, "sdpa": args.sdpa, "compile": args.compile,
                      "error": reason}))
    sys.exit(status)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small", choices=PRESETS)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--attention", default="std", choices=["std", "lgt", "egt", "gin", "pna"])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="f32", choices=["f32", "tf32", "bf16"],
                    help="f32; tf32 (f32 storage, TF32 tensor-core matmuls); bf16 (autocast to "
                         "bfloat16 around forward and loss, f32 weights and AdamW)")
    ap.add_argument("--sdpa", action="store_true",
                    help="fused attention (F.scaled_dot_product_attention) for std, lgt, egt, gin")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the model; compile_s is the warm-up's wall time")
    args = ap.parse_args()
    if args.compile and not hasattr(torch, "compile"):
        fail(args, f"PyTorch {torch.__version__} has no torch.compile (needs 2.0)", 3)
    if args.sdpa and (reason := torch_sdpa_attention.sdpa_unsupported_reason(args.attention)):
        fail(args, reason, 3)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    # TF32 only where asked: f32 is the strict f32 that Gradus's f32 runs (cuBLAS COMPUTE_32F).
    torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = args.precision == "tf32"
    try:
        run(args)
    except RuntimeError as e:  # torch.cuda.OutOfMemoryError is a RuntimeError
        if "out of memory" in str(e):
            fail(args, "OOM", 4)
        raise


def run(args):
    p = PRESETS[args.preset]
    torch.manual_seed(args.seed)
    model = gradus_torch.LlamaLM(gradus_torch.Config(
        vocab_size=p["vocab"], hidden_size=p["d"], num_attention_heads=p["heads"],
        intermediate_size=p["ff"], num_hidden_layers=p["layers"], max_position_embeddings=p["seq"]))
    if args.attention in ("gin", "pna"):
        torch_graph_attention.replace_attention(model, args.attention)
    elif args.attention != "std":
        add_grading(model, model.cfg)
    if args.sdpa:
        torch_sdpa_attention.use_sdpa(model, args.attention)
    model = model.to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    forward = torch.compile(model) if args.compile else model
    ids = torch.randint(0, p["vocab"], (p["batch"], p["seq"] + 1), device=args.device)
    inputs, targets = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()
    # bf16: autocast around forward and loss only; backward follows the forward's dtypes, the
    # weights, their gradients and AdamW's state stay f32 (mixed precision).
    autocast = torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast:
            logits = forward(inputs)
            loss = F.cross_entropy(logits.view(-1, p["vocab"]), targets.view(-1))
        loss.backward()
        opt.step()
        return loss.item()  # waits for the GPU: the step is timed whole

    # Warm-up: one step (optimiser state, allocator cache); compiled, two more, since the first
    # calls compile (and may recompile once) and would otherwise land in the timed steps.
    t0 = time.perf_counter()
    for _ in range(3 if args.compile else 1):
        step()
    warmup_s = time.perf_counter() - t0
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
    flops = step_matmul_flops(p, args.attention)
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
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else "",
        "precision": args.precision, "sdpa": args.sdpa, "compile": args.compile,
        # Wall time of the warm-up steps; with --compile, compilation included.
        "warmup_s": warmup_s, "compile_s": warmup_s if args.compile else 0.0,
        "step_matmul_gflop": flops / 1e9,
        "model_tflops_per_s": flops / (median / 1000.0) / 1e12,
    }))


if __name__ == "__main__":
    main()
