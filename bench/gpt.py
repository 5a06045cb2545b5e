"""The GPT peer: a small GPT trained with nanoGPT's CPU recipe.

The model is nanoGPT's (karpathy/nanoGPT, model.py, MIT licence), written
again here in short: token and position embeddings, pre-LayerNorm blocks of
causal self-attention (F.scaled_dot_product_attention) and a GELU MLP, a
last LayerNorm and a head tied to the token embedding; no biases and no
LayerNorm biases (train.py's bias=False); weights N(0, 0.02), the residual
projections N(0, 0.02 / sqrt(2 * layers)).

The recipe is its README's "I only have a macbook" run of
config/train_shakespeare_char.py: 4 layers, 4 heads, width 128, context 64,
batch 12, dropout 0; AdamW at 1e-3 with betas (0.9, 0.99), weight decay 0.1
on every tensor of two or more dimensions (configure_optimizers: the linear
weights and the tied token embedding and the position embedding; not the
LayerNorm gains), gradients clipped to norm 1 (train.py's grad_clip); 100
warm-up iterations, then a cosine from 1e-3 down to 1e-4. nanoGPT spreads
the cosine over 2,000 iterations; here it is spread over the wall-clock
budget (from the end of the warm-up to the budget), so a run of any length
ends at 1e-4. Batches are nanoGPT's get_batch: random windows of the
training text.

Held-out text is scored with a sliding window: windows of 64 characters
advancing by 32, each scoring its last 32 predictions (the first window all
of its own), so every character is predicted from at least 32 characters
before it (33 to 64). Characters the training text lacks are left out, as
the other contestants leave them out (torch_rnn.encode).

    python bench/gpt.py --check   # the sliding-window scorer against one character at a time
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn
from torch.nn import functional as F

BLOCK, LAYERS, HEADS, WIDTH, BATCH = 64, 4, 4, 128, 12
LR, MIN_LR, BETAS, WEIGHT_DECAY, WARMUP, CLIP = 1e-3, 1e-4, (0.9, 0.99), 0.1, 100, 1.0
CONTEXT = 32  # the fewest characters before any scored one, less one


class Attention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in self.qkv(x).split(C, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.ln1 = nn.LayerNorm(width, bias=False)
        self.attn = Attention(width, heads)
        self.ln2 = nn.LayerNorm(width, bias=False)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width, bias=False), nn.GELU(),
                                 nn.Linear(4 * width, width, bias=False))  # fmt: skip

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size, block=BLOCK, layers=LAYERS, heads=HEADS, width=WIDTH):
        super().__init__()
        self.block = block
        self.wte = nn.Embedding(vocab_size, width)
        self.wpe = nn.Embedding(block, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width, bias=False)
        self.head = nn.Linear(width, vocab_size, bias=False)
        self.wte.weight = self.head.weight  # weight tying
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
        for b in self.blocks:  # GPT-2's scaled init of the projections into the residual stream
            for w in (b.attn.proj.weight, b.mlp[2].weight):
                nn.init.normal_(w, mean=0.0, std=0.02 / math.sqrt(2 * layers))

    def features(self, idx):
        """(B, T) indices -> (B, T, width), the head's input."""
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for b in self.blocks:
            x = b(x)
        return self.ln_f(x)

    def forward(self, idx):
        return self.head(self.features(idx))


def optimizer(model):
    """AdamW as nanoGPT's configure_optimizers builds it: decay on tensors of
    two or more dimensions only."""
    params = [p for p in model.parameters() if p.requires_grad]  # the tied weight once
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]  # fmt: skip
    return torch.optim.AdamW(groups, lr=LR, betas=BETAS)


def rate(iteration, elapsed, warm_end, budget):
    """nanoGPT's get_lr with its cosine over seconds: linear warm-up for
    WARMUP iterations, then from LR to MIN_LR between the warm-up's end
    (warm_end seconds, None while warming up) and the budget."""
    if warm_end is None:
        return LR * (iteration + 1) / (WARMUP + 1)
    ratio = min(max((elapsed - warm_end) / max(budget - warm_end, 1e-9), 0.0), 1.0)
    return MIN_LR + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (LR - MIN_LR)


def train(model, data, budget, clock=time.monotonic, seed=1337, iterations=None):
    """Train on data (a 1-D int64 tensor) for budget seconds of clock(), or
    for `iterations` steps; returns (iterations, seconds)."""
    opt = optimizer(model)
    gen = torch.Generator().manual_seed(seed)
    offsets = torch.arange(BLOCK)
    start, warm_end, it = clock(), None, 0
    model.train()
    while True:
        elapsed = clock() - start
        if elapsed >= budget or it == iterations:
            return it, elapsed
        if it == WARMUP:
            warm_end = elapsed
        for group in opt.param_groups:
            group["lr"] = rate(it, elapsed, warm_end, budget)
        ix = torch.randint(len(data) - BLOCK, (BATCH,), generator=gen)[:, None] + offsets
        logits = model(data[ix])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), data[ix + 1].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        it += 1


def windows(n, block=BLOCK, context=CONTEXT):
    """The scorer's windows over a text of n characters (n - 1 predictions,
    input position p predicting character p + 1): (start, first, end) for
    each, the window's inputs being positions [start, start + block) and the
    ones it scores [first, end). Every position is scored once, from at least
    context + 1 characters (its own and those before it in the window) once
    the first window is past."""
    preds = n - 1
    if preds <= 0:
        return []
    if preds <= block:
        return [(0, 0, preds)]
    out, start, done, stride = [], 0, 0, block - context
    while start + block <= preds:
        out.append((start, done, start + block))
        done, start = start + block, start + stride
    if done < preds:
        start = preds - block
        out.append((start, done, preds))
    return out


@torch.no_grad()
def loss_sum(model, ix, batch=64):
    """Total nats of predicting ix[1:] with the sliding window, and how many."""
    model.eval()
    wins = windows(len(ix), model.block)
    total = 0.0
    for k in range(0, len(wins), batch):
        group = wins[k : k + batch]
        width = min(model.block, len(ix) - 1)
        x = torch.stack([ix[s : s + width] for s, _, _ in group])
        y = torch.stack([ix[s + 1 : s + 1 + width] for s, _, _ in group])
        keep = torch.zeros(x.shape, dtype=torch.bool)
        for row, (s, first, end) in enumerate(group):
            keep[row, first - s : end - s] = True
        h = model.features(x)[keep]  # the head only where scored: it is most of the cost for large alphabets
        total += float(F.cross_entropy(model.head(h), y[keep], reduction="sum"))
    return total, max(len(ix) - 1, 0)


@torch.no_grad()
def loss_sum_slowly(model, ix, context_of):
    """The same sum one character at a time: position p predicted from
    ix[context_of(p) : p + 1] alone, the model run afresh for each."""
    model.eval()
    total = 0.0
    for p in range(len(ix) - 1):
        logits = model(ix[context_of(p) : p + 1][None])[0, -1]
        total += float(F.cross_entropy(logits[None], ix[p + 1 : p + 2], reduction="sum"))
    return total


def check(n=700, steps=60):
    """The sliding-window scorer against loss_sum_slowly on n characters of
    a text, after a few training steps so that the model has context to use."""
    text = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n" * 40)[:n]
    chars = sorted(set(text))
    ix = torch.tensor([chars.index(c) for c in text])
    torch.manual_seed(0)
    model = GPT(len(chars))
    train(model, ix, budget=math.inf, iterations=steps)  # by count, whatever the machine's load
    start_of = {}
    for s, first, end in windows(len(ix)):
        for p in range(first, end):
            assert p not in start_of, f"position {p} scored twice"
            start_of[p] = s
    assert sorted(start_of) == list(range(len(ix) - 1)), "a position left unscored"
    fewest = min(p - s + 1 for p, s in start_of.items() if p >= BLOCK)
    fast, scored = loss_sum(model, ix)
    slow = loss_sum_slowly(model, ix, start_of.get)
    full = loss_sum_slowly(model, ix, lambda p: max(0, p - BLOCK + 1))
    bits = 1 / scored / math.log(2)
    print(f"{len(ix)} characters, {len(windows(len(ix)))} windows, fewest characters of context past the first window: "
          f"{fewest}")  # fmt: skip
    print(f"sliding window, batched:           {fast * bits:.6f} bits/char")
    print(f"the same contexts, one at a time:  {slow * bits:.6f} bits/char (difference {abs(fast - slow) * bits:.2e})")
    print(f"a full {BLOCK} characters of context: {full * bits:.6f} bits/char")
    return abs(fast - slow) * bits


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--check"]:
        raise SystemExit(0 if check() < 1e-4 else 1)
    print(__doc__)
