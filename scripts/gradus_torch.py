"""The Gradus language model written by hand in plain PyTorch, and a safetensors reader/writer.

Shared by scripts/make-torch-fixtures (writes the parity fixture) and
scripts/check-torch-loads-checkpoint.py (loads a Gradus checkpoint into PyTorch). The model is the
Hugging Face Llama architecture as Gradus builds it (models/nn/lm.h): token embedding, pre-norm
decoder blocks (RMSNorm, causal multi-head attention with RoPE in the rotate_half convention,
SwiGLU), a final RMSNorm and a linear head (tied or untied), no biases. Module names give the
Hugging Face parameter names (model.layers.0.self_attn.q_proj.weight, ...), and nn.Linear stores its
weight (out, in), so a Gradus checkpoint loads as it is.

The safetensors package is not needed: the format (8-byte little-endian header length, JSON header,
raw little-endian data) is read and written here with struct and json.
"""

import json
import math
import struct
import sys

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - depends on the machine
    sys.stderr.write(
        "PyTorch is not installed for this Python interpreter.\n"
        "On Debian or Ubuntu install it with:  sudo apt-get install python3-torch\n"
        "then run this script with /usr/bin/python3.\n")
    sys.exit(2)

# ------------------------------------------------------------------------------------- safetensors

_DTYPES = {
    "F32": (torch.float32, 4),
    "F64": (torch.float64, 8),
    "I64": (torch.int64, 8),
    "BF16": (torch.bfloat16, 2),
}
_NAMES = {dt: name for name, (dt, _) in _DTYPES.items()}


def save_safetensors(path, tensors, metadata=None):
    """Writes {name: tensor} and a {str: str} metadata map to `path`.

    Entries are laid out widest element first, then by name (as the reference writer does), so
    every tensor is aligned; the header is padded with spaces to a multiple of 8 bytes."""
    items = []
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        if t.dtype not in _NAMES:
            raise ValueError(f"{path}: tensor '{name}' has unsupported dtype {t.dtype}")
        items.append((name, t))
    items.sort(key=lambda kv: (-kv[1].element_size(), kv[0]))
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in sorted(metadata.items())}
    blobs, offset = [], 0
    for name, t in items:
        # numpy() does not hold bfloat16: go through its 16-bit pattern.
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def load_safetensors(path):
    """Returns ({name: tensor}, metadata) for the file at `path`."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError(f"{path}: header length {n} runs past the end of the file")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {}) or {}
    body = data[8 + n:]
    tensors = {}
    for name, entry in header.items():
        if entry["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: tensor '{name}' has unsupported dtype {entry['dtype']}")
        dtype, size = _DTYPES[entry["dtype"]]
        begin, end = entry["data_offsets"]
        shape = entry["shape"]
        count = math.prod(shape)
        if end - begin != count * size:
            raise ValueError(f"{path}: tensor '{name}' holds {end - begin} bytes, "
                             f"expected {count * size} for shape {shape}")
        raw = bytearray(body[begin:end])
        if count == 0:
            t = torch.empty(shape, dtype=dtype)
        elif dtype == torch.bfloat16:
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16).reshape(shape)
        else:
            t = torch.frombuffer(raw, dtype=dtype).reshape(shape)
        tensors[name] = t
    return tensors, metadata


# ------------------------------------------------------------------------------------------ config

class Config:
    """The keys of Gradus's ModelConfig (Hugging Face LlamaConfig names plus attention_kind)."""

    INT_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "max_position_embeddings")
    FLOAT_KEYS = ("rms_norm_eps", "rope_theta", "attention_dropout")

    def __init__(self, **kw):
        self.vocab_size = 256
        self.hidden_size = 256
        self.intermediate_size = 688
        self.num_hidden_layers = 4
        self.num_attention_heads = 4
        self.rms_norm_eps = 1e-5
        self.rope_theta = 10000.0
        self.max_position_embeddings = 128
        self.tie_word_embeddings = False
        self.attention_dropout = 0.0
        self.attention_kind = "std"
        for k, v in kw.items():
            if not hasattr(self, k):
                raise ValueError(f"unknown config key '{k}'")
            setattr(self, k, v)

    def to_metadata(self):
        """Strings as Gradus's ModelConfig::to_map() writes them."""
        out = {k: str(getattr(self, k)) for k in self.INT_KEYS}
        out.update({k: repr(float(getattr(self, k))) for k in self.FLOAT_KEYS})
        out["tie_word_embeddings"] = "true" if self.tie_word_embeddings else "false"
        out["attention_kind"] = self.attention_kind
        return out

    @classmethod
    def from_metadata(cls, meta, source="checkpoint"):
        """Reads the config keys of a safetensors __metadata__ map (other keys are ignored)."""
        kw = {}
        for k in cls.INT_KEYS:
            if k in meta:
                kw[k] = int(meta[k])
        for k in cls.FLOAT_KEYS:
            if k in meta:
                kw[k] = float(meta[k])
        if "tie_word_embeddings" in meta:
            if meta["tie_word_embeddings"] not in ("true", "false"):
                raise ValueError(f"{source}: tie_word_embeddings must be true or false, found "
                                 f"'{meta['tie_word_embeddings']}'")
            kw["tie_word_embeddings"] = meta["tie_word_embeddings"] == "true"
        if "attention_kind" in meta:
            kw["attention_kind"] = meta["attention_kind"]
        cfg = cls(**kw)
        if cfg.attention_kind != "std":
            raise ValueError(f"{source}: attention_kind '{cfg.attention_kind}' has no PyTorch "
                             "counterpart here (only 'std')")
        return cfg


# ------------------------------------------------------------------------------------------- model

class RMSNorm(nn.Module):
    # y = x / sqrt(mean(x^2) + eps) * weight, over the last axis.
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    # Hugging Face's convention: channel i pairs with channel i + d/2.
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_tables(T, D, theta, dtype, offset=0):
    # inv_freq_i = theta^(-2i/D); angle(t, i) = t * inv_freq_i. Computed in float64 and rounded
    # once to the model's dtype, as the Gradus kernel does.
    i = torch.arange(D // 2, dtype=torch.float64)
    inv_freq = theta ** (-2.0 * i / D)
    t = torch.arange(offset, offset + T, dtype=torch.float64)
    angles = torch.outer(t, inv_freq)
    angles = torch.cat((angles, angles), dim=-1)  # (T, D)
    return angles.cos().to(dtype), angles.sin().to(dtype)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C = cfg.hidden_size
        self.heads = cfg.num_attention_heads
        self.head_dim = C // self.heads
        self.theta = cfg.rope_theta
        self.dropout = cfg.attention_dropout
        self.q_proj = nn.Linear(C, C, bias=False)
        self.k_proj = nn.Linear(C, C, bias=False)
        self.v_proj = nn.Linear(C, C, bias=False)
        self.o_proj = nn.Linear(C, C, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        H, D = self.heads, self.head_dim

        def split(t):  # (B, T, C) -> (B, H, T, D)
            return t.view(B, T, H, D).transpose(1, 2)

        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        cos, sin = (t.to(x.device) for t in rope_tables(T, D, self.theta, x.dtype))
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        scores = q @ k.transpose(-2, -1) / math.sqrt(D)  # (B, H, T, T)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)  # key after query
        p = scores.masked_fill(mask, float("-inf")).softmax(-1)
        p = F.dropout(p, self.dropout, self.training)
        out = (p @ v).transpose(1, 2).reshape(B, T, C)
        return self.o_proj(out)


class MLP(nn.Module):
    # SwiGLU: down(silu(gate(x)) * up(x)).
    def __init__(self, cfg):
        super().__init__()
        C, Fw = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = nn.Linear(C, Fw, bias=False)
        self.up_proj = nn.Linear(C, Fw, bias=False)
        self.down_proj = nn.Linear(Fw, C, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    # Pre-norm: h = x + attn(norm1(x)); out = h + mlp(norm2(h)).
    def __init__(self, cfg):
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x):
        h = x + self.self_attn(self.input_layernorm(x))
        return h + self.mlp(self.post_attention_layernorm(h))


class Decoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, ids):
        h = self.embed_tokens(ids)
        for layer in self.layers:
            h = layer(h)
        return self.norm(h)


class LlamaLM(nn.Module):
    """Hugging Face LlamaForCausalLM's layout: model.* and lm_head."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = Decoder(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, ids):
        return self.lm_head(self.model(ids))

    def loss(self, ids, targets):
        logits = self(ids)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    def checkpoint_names(self):
        """The parameter names a checkpoint holds: named_parameters() lists a tied weight once,
        under model.embed_tokens.weight, which is what Hugging Face writes for a tied Llama."""
        return [name for name, _ in self.named_parameters()]

    def load_checkpoint_tensors(self, tensors, source):
        """Copies the weights by name, refusing any missing, extra or mis-shaped tensor."""
        params = dict(self.named_parameters())
        missing = [n for n in params if n not in tensors]
        extra = [n for n in tensors if n not in params]
        if self.cfg.tie_word_embeddings and "lm_head.weight" in extra:
            extra.remove("lm_head.weight")  # a tied head may be written out; the table wins
        bad = [f"{n}: file {list(tensors[n].shape)} vs model {list(p.shape)}"
               for n, p in params.items() if n in tensors and tensors[n].shape != p.shape]
        if missing or extra or bad:
            raise ValueError(f"{source}: does not match the model: missing {missing}, "
                             f"unexpected {extra}, shape mismatches {bad}")
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(tensors[n].to(p.dtype))
