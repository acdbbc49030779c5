"""PyTorch's fused attention (F.scaled_dot_product_attention) for the LM step benchmark (`--sdpa`).

The issue's comparison point is PyTorch at its best, so each kind that has a softmax over causal
scores gets the fused form with the same arithmetic as the plain one:
- std: softmax(q k^T / sqrt(d_h)) v, causal, as gradus_torch.Attention;
- lgt, egt: the same module: their grading scales the Q and K projection weights (a
  parametrization, torch_lm_step.add_grading), so Q and K arrive scaled before the fused kernel;
- gin: softmax(s * sharpening) with s = q k^T / sqrt(d_h) equals the fused kernel on (q *
  sharpening, k); its A v is the kernel's output and feeds the heads' GIN layers, all heads in
  one batched MLP (the plain form keeps the reference's loop over the heads).
pna has no such form: its adjacency is a sharp softplus of ReLU scores (not a softmax) and its max
aggregator needs A itself; `sdpa_unsupported_reason` says so.
"""
import torch
import torch.nn.functional as F

import gradus_torch
import torch_graph_attention


def _fused_causal(q, k, v):
    # q, k, v: (B, H, L, d_h) -> (B, H, L, d_h). The kernel wants one dtype; under autocast q and
    # k leave RoPE in the Linear's bf16 while v may still be f32, so all take q's dtype (what the
    # autocast matmul of the plain form does too).
    return F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), is_causal=True)


class SdpaAttention(gradus_torch.Attention):
    def forward(self, x):
        # x: (B, L, C) -> (B, L, C)
        B, T, C = x.shape
        H, D = self.heads, self.head_dim

        def split(t):  # (B, L, C) -> (B, H, L, d_h)
            return t.view(B, T, H, D).transpose(1, 2)

        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        cos, sin = (t.to(x.device) for t in gradus_torch.rope_tables(T, D, self.theta, q.dtype))
        q = q * cos + gradus_torch.rotate_half(q) * sin
        k = k * cos + gradus_torch.rotate_half(k) * sin
        out = _fused_causal(q, k, v).transpose(1, 2).reshape(B, T, C)
        return self.o_proj(out)


class SdpaGINAttention(torch_graph_attention.GINAttention):
    def forward(self, x):
        # x: (B, L, C) -> (B, L, C); v is x itself (no V projection), A v per head from the kernel.
        B, T, C = x.shape
        H, D = self.heads, self.head_dim
        split = lambda t: t.view(B, T, H, D).transpose(1, 2)
        q, k = torch_graph_attention._rope(split(self.q_proj(x)), split(self.k_proj(x)), self.theta)
        v = split(x)
        av = _fused_causal(q * self.sharpening, k, v)  # the sharpening scalar folded into q
        return self._gin_heads(v, av).transpose(1, 2).reshape(B, T, C)

    def _gin_heads(self, x, ax):
        # x, ax: (B, H, L, d_h) -> (B, H, L, d_h): every head's _GINLayer, mlp(eps x + A x), at
        # once. The per-head parameters are stacked along a head axis (the same parameters, so
        # the same model and gradients): the reference's Python loop over the heads is gone, as
        # PyTorch at its best would write it. Each Linear's bias takes the product's dtype, as
        # nn.Linear's does under autocast.
        layers = self.gin_layers
        norm = layers[0].mlp[2]  # every head has the same eps

        def stacked(get):  # (H, ...) of a per-head parameter
            return torch.stack([get(layer) for layer in layers])

        eps = stacked(lambda l: l.epsilon).view(1, -1, 1, 1)
        w1, b1 = stacked(lambda l: l.mlp[0].weight), stacked(lambda l: l.mlp[0].bias).unsqueeze(1)
        w2, b2 = stacked(lambda l: l.mlp[4].weight), stacked(lambda l: l.mlp[4].bias).unsqueeze(1)
        gain = stacked(lambda l: l.mlp[2].weight).unsqueeze(1)  # (H, 1, hidden)
        h = torch.matmul(eps * x + ax, w1.transpose(1, 2))  # (B, H, L, hidden)
        h = F.dropout(h + b1.to(h.dtype), layers[0].mlp[1].p, self.training)
        h = F.silu(h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.eps) * gain)
        out = torch.matmul(h, w2.transpose(1, 2))  # (B, H, L, d_h)
        return out + b2.to(out.dtype)


def sdpa_unsupported_reason(kind):
    """None where `use_sdpa` can run `kind` with this PyTorch, else why not (one line)."""
    if not hasattr(F, "scaled_dot_product_attention"):
        return f"PyTorch {torch.__version__} has no F.scaled_dot_product_attention (needs 2.0)"
    if kind == "pna":
        return ("pna has no fused-attention form: its adjacency is a sharp softplus of ReLU "
                "scores, not a softmax, and its max aggregator needs the adjacency itself")
    return None


def use_sdpa(model, kind):
    """Switches every block of a gradus_torch.LlamaLM (kinds already installed) to the fused form;
    the parameters and their names stay as they are."""
    cls = SdpaGINAttention if kind == "gin" else SdpaAttention
    for block in model.model.layers:
        block.self_attn.__class__ = cls
