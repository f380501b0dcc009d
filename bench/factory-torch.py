"""PyTorch CPU peer of bench/factory.ts: LoRA training steps of the same Llama model.

Started by bench/factory.ts with Debian's /usr/bin/python3 (python3-torch). It reads the same
model directory (config.json + f32 model.safetensors, written by the bench) and the same batch,
builds the textbook Llama forward in eager PyTorch (RMSNorm, rotate-half RoPE, GQA softmax
attention, SwiGLU, tied head; the base frozen, LoRA A/B on the target projections with
PEFT's scale alpha/r), and runs AdamW steps when asked. Protocol: one JSON object per line on
stdin, one JSON object per line on stdout.

  {"cmd": "steps", "n": k}  ->  {"ms": [...], "loss": [...]}   (k timed steps)
  {"cmd": "quit"}
"""

import json
import math
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise ValueError(f"{name}: dtype {info['dtype']} (the bench writes f32)")
        lo, hi = info["data_offsets"]
        arr = np.frombuffer(data, dtype=np.float32, count=(hi - lo) // 4, offset=base + lo)
        out[name] = torch.from_numpy(arr.copy()).reshape(info["shape"])
    return out


class Lora(torch.nn.Module):
    def __init__(self, weight, rank, alpha, gen):
        super().__init__()
        out_dim, in_dim = weight.shape
        self.weight = weight  # frozen base
        bound = 1 / math.sqrt(in_dim)
        self.A = torch.nn.Parameter(torch.rand(rank, in_dim, generator=gen) * 2 * bound - bound)
        self.B = torch.nn.Parameter(torch.zeros(out_dim, rank))
        self.scale = alpha / rank

    def forward(self, x):
        return F.linear(x, self.weight) + F.linear(F.linear(x, self.A), self.B) * self.scale


def frozen(weight):
    return lambda x: F.linear(x, weight)


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Llama(torch.nn.Module):
    def __init__(self, cfg, weights, rank, alpha, targets, seed):
        super().__init__()
        self.cfg = cfg
        self.w = weights
        gen = torch.Generator().manual_seed(seed)
        self.loras = torch.nn.ModuleDict()
        self.proj = []
        for layer in range(cfg["num_hidden_layers"]):
            p = {}
            for m in ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]:
                kind = "self_attn" if m in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
                w = weights[f"model.layers.{layer}.{kind}.{m}.weight"]
                if m in targets:
                    mod = Lora(w, rank, alpha, gen)
                    self.loras[f"{layer}_{m}"] = mod
                    p[m] = mod
                else:
                    p[m] = frozen(w)
            self.proj.append(p)

    def forward(self, ids, pos):
        cfg = self.cfg
        eps = cfg["rms_norm_eps"]
        n_h = cfg["num_attention_heads"]
        kv_h = cfg["num_key_value_heads"]
        d = cfg["hidden_size"] // n_h
        bsz, t = ids.shape
        embed = self.w["model.embed_tokens.weight"]
        x = F.embedding(ids, embed)
        inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
        freqs = pos.float()[..., None] * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)[:, None, :, :]
        cos, sin = emb.cos(), emb.sin()
        mask = torch.full((t, t), float("-inf")).triu(1)
        for layer, p in enumerate(self.proj):
            pre = f"model.layers.{layer}"
            h = rms_norm(x, self.w[f"{pre}.input_layernorm.weight"], eps)
            q = p["q_proj"](h).view(bsz, t, n_h, d).transpose(1, 2)
            k = p["k_proj"](h).view(bsz, t, kv_h, d).transpose(1, 2)
            v = p["v_proj"](h).view(bsz, t, kv_h, d).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            k = k.repeat_interleave(n_h // kv_h, dim=1)
            v = v.repeat_interleave(n_h // kv_h, dim=1)
            s = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(d) + mask
            a = torch.matmul(torch.softmax(s, dim=-1), v)
            x = x + p["o_proj"](a.transpose(1, 2).reshape(bsz, t, n_h * d))
            h = rms_norm(x, self.w[f"{pre}.post_attention_layernorm.weight"], eps)
            x = x + p["down_proj"](F.silu(p["gate_proj"](h)) * p["up_proj"](h))
        x = rms_norm(x, self.w["model.norm.weight"], eps)
        head = self.w.get("lm_head.weight", embed)
        return F.linear(x, head)


def main():
    init = json.loads(sys.stdin.readline())
    torch.set_num_threads(int(init["threads"]))
    torch.manual_seed(0)
    with open(f"{init['modelDir']}/config.json") as f:
        cfg = json.load(f)
    weights = read_safetensors(f"{init['modelDir']}/model.safetensors")
    model = Llama(cfg, weights, init["rank"], init["alpha"], set(init["targets"]), init["seed"])
    bsz, t = init["batch"], init["seq"]
    ids = torch.tensor(init["inputIds"], dtype=torch.long).view(bsz, t)
    labels = torch.tensor(init["labels"], dtype=torch.long).view(bsz, t)
    pos = torch.arange(t).expand(bsz, t)
    opt = torch.optim.AdamW(model.parameters(), lr=init["lr"], weight_decay=0.0)
    print(
        json.dumps(
            {
                "ready": True,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "trainable": sum(p.numel() for p in model.parameters()),
            }
        ),
        flush=True,
    )
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "quit":
            break
        ms, losses = [], []
        for _ in range(int(msg["n"])):
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            logits = model(ids, pos)
            loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            ms.append((time.perf_counter() - start) * 1000)
            losses.append(loss.item())
        print(json.dumps({"ms": ms, "loss": losses}), flush=True)


if __name__ == "__main__":
    main()
