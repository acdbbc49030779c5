#!/usr/bin/env python3
"""PyTorch side of the language-model training-step benchmark (BENCHMARKS.md workloads).

The same Llama-style decoder as Gradus's `gradus bench lm`: RMSNorm (eps 1e-5), RoPE (rotate_half,
base 1e4) on Q and K, causal softmax attention, SwiGLU, pre-norm residuals, untied head, no biases,
cross-entropy over all positions, random token ids, AdamW. Prints one JSON object like Gradus's.
Needs PyTorch (Debian: apt-get install python3-torch).
"""
import argparse
import json
import math
import resource
import statistics
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    sys.exit("torch_lm_step.py needs PyTorch: apt-get install python3-torch")

PRESETS = {
    "small": dict(vocab=256, d=256, heads=4, ff=688, layers=4, seq=128, batch=32),
    "medium": dict(vocab=50304, d=768, heads=12, ff=2048, layers=12, seq=1024, batch=16),
}


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Block(nn.Module):
    def __init__(self, d, heads, ff):
        super().__init__()
        self.heads = heads
        self.input_layernorm = RMSNorm(d)
        self.post_attention_layernorm = RMSNorm(d)
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)
        self.gate_proj = nn.Linear(d, ff, bias=False)
        self.up_proj = nn.Linear(d, ff, bias=False)
        self.down_proj = nn.Linear(ff, d, bias=False)

    def forward(self, x, cos, sin, mask):
        b, t, d = x.shape
        h = self.input_layernorm(x)
        q, k, v = (p(h).view(b, t, self.heads, -1).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        attn = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1) @ v
        x = x + self.o_proj(attn.transpose(1, 2).reshape(b, t, d))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class LM(nn.Module):
    def __init__(self, vocab, d, heads, ff, layers, seq):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList(Block(d, heads, ff) for _ in range(layers))
        self.norm = RMSNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        dh = d // heads
        inv_freq = 1.0 / (10000.0 ** (torch.arange(0, dh, 2, dtype=torch.float64) / dh))
        angles = torch.outer(torch.arange(seq, dtype=torch.float64), inv_freq)
        angles = torch.cat((angles, angles), dim=-1)
        self.register_buffer("cos", angles.cos().float())
        self.register_buffer("sin", angles.sin().float())
        self.register_buffer("mask", torch.triu(torch.ones(seq, seq, dtype=torch.bool), 1))

    def forward(self, ids):
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x, self.cos, self.sin, self.mask)
        return self.head(self.norm(x))


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
    model = LM(p["vocab"], p["d"], p["heads"], p["ff"], p["layers"], p["seq"])
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
