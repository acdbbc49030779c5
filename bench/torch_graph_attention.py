"""PyTorch GIN-Attention and PNA-Attention for the LM step benchmark (`--attention gin|pna`).

They follow the reference code (lamm-mit Graph-Aware-Transformers, src/xgpt/Attention_GNN.py,
LlamaAttentionGIN and LlamaAttentionPNA) in structure and cost: a Python loop over the heads with
one small module per head, and PNA's max aggregator through an expanded (B, L, L, d_h) copy per
head, masked with -inf and reduced, as the reference computes it (it also computes the unused min
the same way; so does this). Options are the benchmark's (BENCHMARKS.md) and Gradus's defaults
(docs/graph_attention.md): gin with sharpening, gamma 0.5, no V/O projection, threshold none;
pna with ReLU adjacency, sharp_softplus (tau 0.2, beta 10), sum/mean/max/var, gamma 0.5, an MLP
without biases (Llama's mlp_bias = False). The max runs over the neighbours j (X.unsqueeze(1)):
the released code's X.unsqueeze(2) takes each token's own features instead, at the same cost.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def _rope(q, k, theta):
    B, H, T, D = q.shape
    i = torch.arange(D // 2, dtype=torch.float64)
    angles = torch.outer(torch.arange(T, dtype=torch.float64), theta ** (-2.0 * i / D))
    angles = torch.cat((angles, angles), dim=-1)
    cos, sin = angles.cos().to(q.device, q.dtype), angles.sin().to(q.device, q.dtype)

    def rot(x):
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    return q * cos + rot(q) * sin, k * cos + rot(k) * sin


class _RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class _GINLayer(nn.Module):
    # The reference's GINLayer: eps x + A x, then Linear, Dropout(0.1), RMSNorm, SiLU, Linear.
    def __init__(self, dim, hidden, eps):
        super().__init__()
        self.epsilon = nn.Parameter(torch.tensor(0.0))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.Dropout(0.1), _RMSNorm(hidden, eps),
                                 nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x, adjacency):
        return self.mlp(self.epsilon * x + torch.matmul(adjacency, x))


class GINAttention(nn.Module):
    def __init__(self, cfg, gamma=0.5):
        super().__init__()
        C = cfg.hidden_size
        self.heads, self.head_dim, self.theta = cfg.num_attention_heads, C // cfg.num_attention_heads, cfg.rope_theta
        self.q_proj = nn.Linear(C, C, bias=False)
        self.k_proj = nn.Linear(C, C, bias=False)
        self.sharpening = nn.Parameter(torch.tensor(1.0))
        self.gin_layers = nn.ModuleList(
            _GINLayer(self.head_dim, int(gamma * self.head_dim), cfg.rms_norm_eps) for _ in range(self.heads))

    def forward(self, x):
        B, T, C = x.shape
        H, D = self.heads, self.head_dim
        split = lambda t: t.view(B, T, H, D).transpose(1, 2)
        q, k = _rope(split(self.q_proj(x)), split(self.k_proj(x)), self.theta)
        v = split(x)
        s = q @ k.transpose(2, 3) / math.sqrt(D)
        causal = torch.tril(torch.ones(T, T, device=x.device)).unsqueeze(0).unsqueeze(0)
        s = s + (1 - causal) * (-1e9)
        a = F.softmax(s * self.sharpening, dim=-1)
        out = torch.cat([self.gin_layers[h](v[:, h], a[:, h]).unsqueeze(1) for h in range(H)], dim=1)
        return out.transpose(1, 2).reshape(B, T, C)


class PNAAttention(nn.Module):
    def __init__(self, cfg, gamma=0.5, tau=0.2, beta=10.0):
        super().__init__()
        C = cfg.hidden_size
        self.heads, self.head_dim, self.theta = cfg.num_attention_heads, C // cfg.num_attention_heads, cfg.rope_theta
        self.tau, self.beta = tau, beta
        self.q_proj = nn.Linear(C, C, bias=False)
        self.k_proj = nn.Linear(C, C, bias=False)
        self.v_proj = nn.Linear(C, C, bias=False)
        self.o_proj = nn.Linear(C, C, bias=False)
        hidden = int(gamma * self.head_dim)
        self.aggregator_mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(4 * self.head_dim, hidden, bias=False), nn.SiLU(),
                          nn.Linear(hidden, self.head_dim, bias=False)) for _ in range(self.heads))

    def forward(self, x):
        B, T, C = x.shape
        H, D = self.heads, self.head_dim
        split = lambda t: t.view(B, T, H, D).transpose(1, 2)
        q, k = _rope(split(self.q_proj(x)), split(self.k_proj(x)), self.theta)
        v = split(self.v_proj(x))
        s = q @ k.transpose(2, 3) / math.sqrt(D)
        causal = torch.tril(torch.ones(T, T, device=x.device)).unsqueeze(0).unsqueeze(0)
        a = F.relu(s + (1 - causal) * (-1e9))
        a = F.softplus(self.beta * (a - self.tau)) / self.beta * causal  # sharp_softplus, re-masked
        deg = a.sum(dim=-1)
        deg = torch.where(deg == 0, torch.ones_like(deg), deg)
        outs = []
        for h in range(H):
            A, X, dh = a[:, h], v[:, h], deg[:, h].unsqueeze(-1)
            s_agg = A @ X
            mean = s_agg / dh
            valid = (A > 0).unsqueeze(-1).expand(-1, -1, -1, D)
            expanded = X.unsqueeze(1).expand(-1, T, -1, -1)  # (B, L, L, D): neighbour j of token i
            mx = expanded.clone()
            mx[~valid] = float("-inf")
            max_agg, _ = torch.max(mx, dim=2)
            mn = expanded.clone()
            mn[~valid] = float("inf")
            _min_agg, _ = torch.min(mn, dim=2)  # computed and unused, as in the reference
            var = torch.clamp((A @ (X * X)) / dh - mean * mean, min=0.0)
            outs.append(self.aggregator_mlps[h](torch.cat([s_agg, mean, max_agg, var], -1)).unsqueeze(1))
        out = torch.cat(outs, dim=1).transpose(1, 2).reshape(B, T, C)
        return self.o_proj(out)


def replace_attention(model, kind):
    """Swaps every block's self_attn of a gradus_torch.LlamaLM for the graph kind."""
    cls = {"gin": GINAttention, "pna": PNAAttention}[kind]
    for block in model.model.layers:
        block.self_attn = cls(model.cfg)
