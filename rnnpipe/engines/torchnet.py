"""The torch engine: the numpy engine's network and optimisers on PyTorch's
fused RNN modules, on a CPU or a GPU, under DDP when torchrun starts it.

Only this module, layout.py, ddp.py and export.py import torch, and only
when a command asks for it (--engine torch, export, import): engines/__init__.py
says so.

The model file stays the numpy engine's: its parameters map exactly onto
torch's modules (layout.py, which says how), in memory only.

Training keeps torch's zero biases at zero by masking their gradients, so
the optimiser sees exactly rnnpipe's parameters (the global norm Adam clips
counts each bias once). The optimisers are optim.py's, as tensor ops. Dropout
masks come from the engine's own torch random state, seeded from the model's
seed and iteration count when the engine is made (the process's torch random
numbers are left as they were): not the numpy engine's
masks, so a run with dropout is not the numpy run bit for bit (without
dropout it is, to float rounding).

The engine keeps weights and optimiser state on the device between updates.
Model.sync() writes them back into the model's numpy arrays (before a save,
a snapshot, a sample or held-out scoring); the engine loads them again
whenever the model says its arrays were made anew (Model.own: the vocabulary
grew, a kept model restored) or written (Model.touched(): a rollback).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from torch.nn import functional as F

from .. import optim
from . import layout
from .layout import DTYPES, Net, from_torch, to_torch

CHUNK = 4096  # characters per forward call when scoring a text as one stream


def device(name=None):
    """A torch.device that works here: name as given, else cuda when
    available, else cpu; engine.Unavailable, in one line, if it does not."""
    from ..errors import Unavailable

    try:
        dev = torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))
        if dev.type not in ("cpu", "cuda", "mps"):  # meta and the like hold no numbers to train
            raise RuntimeError(f"the torch engine trains on cpu, cuda or mps, not {dev.type}")
        torch.zeros(1, device=dev)
    except (RuntimeError, AssertionError) as e:  # torch says "not compiled with CUDA" by an assertion
        raise Unavailable(f"--device {name}: {(str(e) or type(e).__name__).splitlines()[0]}") from None
    return dev


# -- the engine ----------------------------------------------------------------


class Engine:
    """Model.step on torch: forward, backward and optim.py's update for one
    chunk, with the weights and optimiser state kept on `dev`. world: a
    ddp.World when torchrun started this process (gradients averaged over
    its ranks), else None."""

    def __init__(self, model, dev=None, world=None):
        self.model, self.world = model, world
        self.device = device(dev) if not isinstance(dev, torch.device) else dev
        self.dirty = False  # the device copy is newer than the model's arrays
        self.stale = True  # the model's arrays were made or written since the device copy was (touched)

    # -- moving weights between the model and the device

    def _load(self):
        m, cfg = self.model, self.model.config
        dtype = DTYPES[cfg.dtype]
        self.net = Net(cfg, len(m.vocab)).to(self.device)
        with torch.no_grad():
            for name, value in to_torch(m.params, cfg).items():
                self.net.get_parameter(name).copy_(torch.from_numpy(value))
        self.names = [n for n, _ in self.net.named_parameters()]
        self.params = [p for _, p in self.net.named_parameters()]
        self.slots = {}
        for slot in optim.SLOTS[cfg.optimizer]:
            arrays = to_torch(layout.slot(m.opt_state, slot), cfg)
            self.slots[slot] = [torch.from_numpy(arrays[n]).to(self.device, dtype) for n in self.names]
        # torch's second bias exists only where rnnpipe has one: the GRU's n rows
        self.masks = {}
        for n, p in zip(self.names, self.params, strict=True):
            if n.startswith("rnn.bias_hh"):
                mask = torch.zeros_like(p)
                if cfg.cell == "gru":
                    mask[2 * cfg.hidden :] = 1
                self.masks[n] = mask
        self.module = self.net
        if self.world is not None and self.world.size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.module = DistributedDataParallel(self.net, device_ids=ids)
        # dropout masks (see the module's docstring) from the engine's own random state, made from
        # this seed on first use: the process's torch random numbers are left as they were
        self.seed, self.random = cfg.seed * 1_000_003 + m.iterations, None
        self.stale, self.dirty = False, False

    @contextlib.contextmanager
    def _own_random(self):
        """torch's random numbers, inside, are the engine's own (self.random):
        the process's generators are put back as they were on the way out."""
        cuda = self.device.type == "cuda"
        with torch.random.fork_rng(devices=[self.device] if cuda else []):
            if self.random is None:
                torch.manual_seed(self.seed)
            else:
                torch.set_rng_state(self.random[0])
                if cuda:
                    torch.cuda.set_rng_state(self.random[1], self.device)
            try:
                yield
            finally:
                self.random = (torch.get_rng_state(), torch.cuda.get_rng_state(self.device) if cuda else None)

    def touched(self):
        """The model's arrays were made or written (Model.touched): they hold
        the model now, so load them before the next use, and never write
        this copy's updates over them (sync)."""
        self.stale, self.dirty = True, False

    def _current(self):
        """Load the model's arrays unless the device copy is made from them."""
        if self.stale:
            self._load()

    def sync(self):
        """Write the device's weights and optimiser state into the model's
        numpy arrays, in place."""
        if not self.dirty:
            return
        m, cfg = self.model, self.model.config
        with torch.no_grad():
            host = {n: p.detach().cpu().numpy() for n, p in zip(self.names, self.params, strict=True)}
            for k, v in from_torch(host, cfg).items():
                np.copyto(m.params[k], v)
            for slot, tensors in self.slots.items():
                host = {n: t.cpu().numpy() for n, t in zip(self.names, tensors, strict=True)}
                for k, v in from_torch(host, cfg).items():
                    np.copyto(m.opt_state[f"{slot}.{k}"], v)
        self.dirty = False

    # -- computing

    def logits(self, X, state):
        """(logits (time * streams, V), state after) as numpy, no dropout: for tests and scoring."""
        self._current()
        cfg = self.model.config
        self.net.eval()
        with torch.no_grad():
            z, out = self.net(torch.from_numpy(np.asarray(X)).to(self.device), layout.state_in(state, cfg.cell,
                              self.device, DTYPES[cfg.dtype]))  # fmt: skip
        return z.cpu().numpy(), layout.state_out(out, cfg.cell)

    def gradients(self, X, Y, state):
        """(loss, gradients by rnnpipe's names): net.loss's, for tests."""
        loss, _ = self._backward(X, Y, state)
        cfg = self.model.config
        host = {n: p.grad.cpu().numpy() for n, p in zip(self.names, self.params, strict=True)}
        return loss, from_torch(host, cfg)

    def _backward(self, X, Y, state):
        """Forward and backward on this process's streams of the chunk;
        returns (the chunk's loss, summed over time and averaged over all
        streams, as net.loss's; the state after the chunk, all streams)."""
        self._current()
        cfg, dev, dtype = self.model.config, self.device, DTYPES[self.model.config.dtype]
        B = X.shape[1]
        lo, hi, weight = 0, B, 1.0 / B
        world = self.world if self.world is not None and self.world.size > 1 else None
        if world is not None:
            lo, hi = world.share(B)
            # averaged over W ranks, W / B per stream is 1 / B: the whole batch's mean
            weight = world.size / B
            if hi == lo:  # fewer streams than ranks: this rank adds a zero gradient
                lo, hi, weight = 0, 1, 0.0
        X = torch.from_numpy(np.ascontiguousarray(X[:, lo:hi])).to(dev)
        Y = torch.from_numpy(np.ascontiguousarray(Y[:, lo:hi])).to(dev)
        h0 = layout.state_in([tuple(s[lo:hi] for s in layer) for layer in state], cfg.cell, dev, dtype)
        self.net.train()
        for p in self.params:
            p.grad = None
        with self._own_random():
            z, out = self.module(X, h0)
            loss = F.cross_entropy(z, Y.reshape(-1), reduction="sum")
            (loss * weight).backward()
        for n, p in zip(self.names, self.params, strict=True):
            if n in self.masks:
                p.grad.mul_(self.masks[n])
        loss = loss.detach() * (weight / world.size if world is not None else weight)
        if world is None:
            return loss, layout.state_out(out, cfg.cell)
        return world.gather_state(loss, out, cfg.cell, B, weight > 0)

    def step(self, X, Y, state, t, lr=None):
        """One update, as Model.step makes it with net.loss and optim.step:
        returns (loss, state after the chunk, whether it was applied); a NaN
        or infinite loss or gradient applies nothing."""
        cfg = self.model.config
        lr = cfg.lr if lr is None else lr
        loss, state = self._backward(X, Y, state)
        grads = [p.grad for p in self.params]
        sumsq = torch.stack([g.pow(2).sum() for g in grads]).sum()
        loss, sumsq = torch.stack([torch.as_tensor(loss, dtype=sumsq.dtype), sumsq]).tolist()  # one wait
        if not (math.isfinite(loss) and math.isfinite(sumsq)):
            return loss, state, False
        with torch.no_grad():
            if cfg.weight_decay:  # optim.step's decoupled decay
                torch._foreach_mul_(self.params, optim.shrink(lr, cfg.weight_decay))
            if cfg.optimizer == "adagrad":
                self._adagrad(grads, lr, cfg.clip)
            else:
                self._adam(grads, lr, cfg.clip, t, X.shape[0], sumsq)
        self.dirty = True
        return loss, state, True

    def _adagrad(self, grads, lr, clip):
        # optim._adagrad: clip each entry, then the seed's Adagrad
        torch._foreach_clamp_min_(grads, -clip)
        torch._foreach_clamp_max_(grads, clip)
        mem = self.slots["mem"]
        torch._foreach_addcmul_(mem, grads, grads)
        denom = torch._foreach_add(mem, optim.ADAGRAD_EPS)
        torch._foreach_sqrt_(denom)
        torch._foreach_addcdiv_(self.params, grads, denom, value=-lr)

    def _adam(self, grads, lr, clip, t, seq_length, sumsq):
        # optim._adam: the per-character mean gradient, its global norm clipped
        norm = math.sqrt(sumsq) / seq_length
        scale = (1.0 / seq_length) * (min(1.0, clip / norm) if norm > 0 else 1.0)
        b1, b2 = optim.ADAM_BETAS
        step_size = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        m, v = self.slots["m"], self.slots["v"]
        torch._foreach_mul_(grads, scale)
        torch._foreach_mul_(m, b1)
        torch._foreach_add_(m, grads, alpha=1 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_add_(denom, optim.ADAM_EPS)
        steps = torch._foreach_div(m, denom)
        vocab = optim.vocab_factor(self.model.opt_state.get(optim.ADDED), t, np.dtype(self.model.config.dtype))
        if vocab is not None:  # slots with their own count (optim._vocab_rows)
            first, factor = vocab
            factor = torch.from_numpy(factor).to(self.device)
            for n, s in zip(self.names, steps, strict=True):
                if n in layout.VOCAB_AXES:
                    if layout.VOCAB_AXES[n] == 1:
                        s[:, first:] *= factor
                    else:
                        s[first:] *= factor.reshape((-1,) + (1,) * (s.dim() - 1))
        torch._foreach_add_(self.params, steps, alpha=-step_size)

    # -- scoring and sampling

    def score(self, ix, state=None):
        """(nats, characters predicted, state after, torch's) of reading
        indices ix as one stream, CHUNK characters a call, from state (None:
        zero), in the model's dtype and summed in float64."""
        self._current()
        self.net.eval()
        nats, n = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(ix) - 1, CHUNK):
                piece = torch.from_numpy(np.asarray(ix[start : start + CHUNK + 1], np.int64)).to(self.device)
                z, state = self.net(piece[:-1, None], state)
                nats += float(F.cross_entropy(z.double(), piece[1:], reduction="sum"))
                n += len(piece) - 1
        return nats, n, state

    def forward64(self):
        """sample.generate's forward on this device, in float64 as the numpy
        sampler computes (float32 on mps, which has no float64)."""
        m = self.model
        m.sync()
        dtype = "float32" if self.device.type == "mps" else "float64"
        cfg = m.config.replace(dtype=dtype, dropout=0.0)
        net = Net(cfg, len(m.vocab)).to(self.device).eval()
        with torch.no_grad():
            for name, value in to_torch(m.params, cfg).items():
                net.get_parameter(name).copy_(torch.from_numpy(value))

        def forward(X, state):
            with torch.no_grad():
                h = None if state is None else layout.state_in(state, cfg.cell, self.device, DTYPES[dtype])
                z, h = net(torch.from_numpy(np.asarray(X, np.int64)).to(self.device), h)
                return z[-1].double().cpu().numpy(), layout.state_out(h, cfg.cell)

        return forward


class Scorer:
    """evaluate.TextScorer's interface on the torch engine: the text fed in
    pieces is scored as one continuous stream, exactly (no parallel
    segments to converge: torch reads CHUNK characters a call)."""

    def __init__(self, model):
        self.model, self.engine = model, model.engine
        self.unknown, self.nats, self.chars = 0, 0.0, 0
        self.last, self.state = None, None  # the last known character fed, the state before it

    def feed(self, text):
        ix = self.model.vocab.encode(text)
        known = ix[ix >= 0]
        self.unknown += len(ix) - len(known)
        if not len(known):
            return
        if self.last is not None:
            known = np.concatenate([[self.last], known])
        if len(known) > 1:
            nats, n, self.state = self.engine.score(known, self.state)
            self.nats, self.chars = self.nats + nats, self.chars + n
        self.last = int(known[-1])

    def result(self):
        from ..evaluate import Evaluation

        if self.chars == 0:
            raise ValueError("nothing to score: the text needs at least two characters the model knows")
        per = self.nats / self.chars
        perplexity = math.exp(per) if per < 700 else math.inf
        return Evaluation(per / math.log(2), per, perplexity, self.chars, int(self.unknown))
