"""rnnpipe.Model: a network, its optimiser state, vocabulary and training
state together, as one object and one file."""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from . import holdout, modelfile, optim, plan
from .cells import net
from .config import ARCHITECTURE, Config
from .engines import blas_threads, described, parallel
from .errors import SettingError
from .evaluate import TextScorer
from .plan import Options
from .sample import PRIME_CHUNK, beam_search, generate, stop_after
from .sampling import SampleOptions, pieces
from .train import Diverged, Position, Run, block_length
from .vocab import Vocab


class Model:
    """A character-level model: network weights, optimiser state, vocabulary
    and training state, everything one model file holds.

    Make one with Model.new(Config(...)) or Model.load(path); teach it with
    train(text); use it with sample(), stream() and evaluate(); keep it with
    save(path), which is atomic. Training continues where the last run (in
    this process or, through the file, any other) stopped.

        model = Model.new(Config(cell="lstm", hidden=128))
        model.train(text, max_time=60, callback=Display(sys.stderr))
        print(model.sample(300, prime="ROMEO:"))  # the prime, then 300 characters
    """

    def __init__(self, config: Config, vocab: Vocab, params, opt_state, rng, iterations=0, chars_seen=0,
                 smooth_loss=None, last_loss=None, rate=None):  # fmt: skip
        self.config = config
        self.vocab = vocab
        # None: numpy (net.py, optim.py); or an engine that makes the updates
        # elsewhere (torchnet.Engine) and writes them back on sync()
        self.engine = None
        self.own(params, opt_state)  # self.buffers: the model's arrays, which params and opt_state show
        self.rng = rng  # draws new weights and dropout masks; saved, so resuming is exact
        self.iterations = iterations  # parameter updates so far
        self.chars_seen = chars_seen  # characters predicted in training so far
        self.smooth_loss = math.log(max(len(vocab), 1)) if smooth_loss is None else smooth_loss
        self.last_loss = last_loss  # nats per character of the latest chunk
        self.rate = rate  # the latest update's learning rate as a share of config.lr: where the next run starts
        self.resume = None  # a train.Position where a run stopped early, or None
        # while a run keeps the best model (holdout.py) and this one has trained past it: the best one, a
        # holdout.Best, which a save writes as the file's model (with this one in resume.current)
        self.kept = None
        self.trained_on = None  # the engine (and device) of the latest update, as `rnnpipe info` says it; None: unknown
        self.chosen = None  # why a new model has the architecture it has, when a face chose it (plan.choose)
        self.pool = None  # while a run trains on several cores, its parallel.Pool

    def __repr__(self):
        c = self.config
        return (
            f"<rnnpipe.Model {c.cell} {c.layers}x{c.hidden}, {self.num_params:,} parameters, "
            f"{len(self.vocab)} characters, {self.iterations:,} iterations, "
            f"smooth loss {self.smooth_loss / math.log(2):.3f} bits/char>"
        )

    # -- making, loading, saving -------------------------------------------

    @classmethod
    def new(cls, config: Config | None = None, text: str = "", **changes) -> Model:
        """A fresh model. Its vocabulary is text's characters (it may be empty
        and grow as training meets new characters)."""
        config = (config or Config()).replace(**changes)
        config.check_dropout()
        rng = np.random.default_rng(config.seed)
        vocab = Vocab(sorted(set(text)))
        params = net.init(config, len(vocab), rng)
        return cls(config, vocab, params, optim.init(config.optimizer, params), rng)

    def to_bytes(self) -> bytes:
        """The model file's bytes. While a run keeps the best model and this
        one has trained past it, the file's model is the best one, and this
        one, where the run goes on from, is in its resume.current."""
        if self.kept is None or self.resume is None:
            return self.snapshot(self.resume)
        best = Model.from_bytes(self.kept.data)
        best.config = self.config  # as the run has it now (the guard may have lowered the rate)
        best.resume = dataclasses.replace(self.resume, current=self.snapshot())
        return best.snapshot(best.resume)

    def snapshot(self, resume=None) -> bytes:
        """This model's bytes as they are (with resume: where its run is)."""
        self.sync()
        return modelfile.pack(self.config, self.vocab.chars, self.params, self.opt_state, self._state(resume))

    @classmethod
    def from_bytes(cls, data: bytes) -> Model:
        config, vocab, params, opt_state, state = modelfile.unpack(data)
        rng = modelfile.unpack_rng(state["rng"])
        rate = state.get("rate")  # version 5 on
        model = cls(config, Vocab(vocab), params, opt_state, rng, state["iterations"], state["chars_seen"],
                    state["smooth_loss"], state["last_loss"], rate)  # fmt: skip
        if state.get("resume") is not None:  # version 1 files have none
            model.resume = Position(**state["resume"])
            if model.resume.current is not None:  # version 7: the later model a run goes on from, checked now
                try:
                    later = Model.from_bytes(model.resume.current)
                except modelfile.ModelFormatError as e:
                    raise modelfile.ModelFormatError(f"state.resume.current, the later model: {e}") from None
                if later.config != config or later.resume is not None:
                    raise modelfile.ModelFormatError("state.resume.current should be a model file with this file's "
                                                     "config and no resume")  # fmt: skip
        model.trained_on = state.get("engine")  # version 6 on
        model.chosen = state.get("chosen")  # version 7 on
        return model

    STATE = ("config", "vocab", "buffers", "rng", "iterations", "chars_seen", "smooth_loss", "last_loss", "rate",
             "resume", "trained_on", "chosen")  # fmt: skip

    def restore(self, data: bytes):
        """Go back to the model saved in data (Model.to_bytes), in place, so
        that whoever holds this object holds that model: every field of
        STATE taken from it; the engine stays, and loads the restored weights
        before its next use."""
        saved = Model.from_bytes(data)
        for name in self.STATE:
            setattr(self, name, getattr(saved, name))
        self.kept = None
        self.touched()

    def save(self, path):
        """Write the model to path atomically: the old file stays whole until
        the new one is completely on disk."""
        modelfile.save_bytes(path, self.to_bytes())

    @classmethod
    def load(cls, path) -> Model:
        with open(os.fspath(path), "rb") as f:
            return cls.from_bytes(f.read())

    def _state(self, resume):
        return {
            "iterations": self.iterations,
            "chars_seen": self.chars_seen,
            "smooth_loss": float(self.smooth_loss),
            "last_loss": None if self.last_loss is None else float(self.last_loss),
            "rate": None if self.rate is None else float(self.rate),
            "engine": self.trained_on,
            "chosen": self.chosen,
            "resume": None if resume is None else modelfile.pack_resume(dataclasses.asdict(resume)),
            "rng": modelfile.pack_rng(self.rng),
        }

    # -- engines -------------------------------------------------------------

    def use(self, engine="numpy", device=None, world=None):
        """Make the updates with engine "numpy" (the default) or "torch" (on
        device: "cpu", "cuda", "cuda:N", "mps"; default cuda when available;
        world: a ddp.World when torchrun started the process). The weights
        stay the model's: the torch engine writes them back on sync()."""
        self.sync()
        if engine == "numpy":
            self.engine = None
            return self
        from .engines import torch_engine

        self.engine = torch_engine().Engine(self, device, world)
        return self

    # -- the arrays: views into flat buffers of the model's own (optim.Buffers) --------

    @property
    def params(self):
        """name -> array (net.py); opt_state: "<slot>.<name>" -> array (optim.py).
        Written in place, or a name set (optim.Views), they are the model's
        (call touched() when an engine is in use); assigned whole, copied in."""
        return self.buffers.params

    @params.setter
    def params(self, params):
        self.own(params, self.buffers.state)

    @property
    def opt_state(self):
        return self.buffers.state

    @opt_state.setter
    def opt_state(self, opt_state):
        self.own(self.buffers.params, opt_state)

    def own(self, params, opt_state):
        """Make copies of params and opt_state the model's arrays, in new flat
        buffers its updates work on; an engine loads them before its next use."""
        self.buffers = optim.Buffers(self.config.optimizer, params, opt_state)
        self.touched()

    def sync(self):
        """Bring params and opt_state up to date with the engine's updates
        (a no-op for the numpy engine, which updates them in place)."""
        if self.engine is not None:
            self.engine.sync()

    @property
    def world(self):
        """The ddp.World of ranks training this model together, or None."""
        world = getattr(self.engine, "world", None)
        return world if world is not None and world.size > 1 else None

    def agree(self, *flags):
        """Each flag, true when true on any rank training this model (as given, alone)."""
        return list(flags) if self.world is None else self.world.any(*flags)

    def touched(self):
        """Say that params or opt_state were made or written in place (a
        rollback): they hold the model now, and the engine loads them again
        before its next use instead of writing its own copy over them."""
        if self.engine is not None:
            self.engine.touched()

    # -- describing ----------------------------------------------------------

    @property
    def num_params(self):
        return sum(p.size for p in self.params.values())

    def configure(self, **changes):
        """Change training hyperparameters (seq_length, batch_size, lr, clip,
        weight_decay, dropout); architecture fields are fixed once a model
        exists, and so is the seed: it seeds a new model's weights and
        dropout, and training goes on from the random state saved with the
        model (ValueError for a seed other than the model's, not silently
        stored and ignored)."""
        fixed = [k for k in changes if k in ARCHITECTURE and changes[k] != getattr(self.config, k)]
        if fixed:
            have = ", ".join(f"{k}={getattr(self.config, k)!r}" for k in fixed)
            raise ValueError(f"cannot change {', '.join(fixed)} of an existing model (it has {have})")
        config = self.config.replace(**changes)
        if config.seed != self.config.seed:
            raise ValueError(
                f"seed {config.seed} seeds a new model only; this one was created with seed {self.config.seed}"
                " and goes on from the random state saved with it"
            )
        if "dropout" in changes:
            config.check_dropout()
        self.config = config

    # -- training ------------------------------------------------------------

    def grow(self, text):
        """Add text's new characters to the vocabulary: a new input column and
        output row each, optimiser state zero (Adam counts their updates from
        here, optim.py), everything learned untouched."""
        new = self.vocab.missing(text)
        if not new:
            return []
        self.sync()  # the engine's latest weights are the ones that grow
        old = len(self.vocab)
        self.vocab = self.vocab.extended(new)
        if old == 0:
            params = net.init(self.config, len(self.vocab), self.rng)
            self.own(params, optim.init(self.config.optimizer, params, self.iterations))
            self.smooth_loss = math.log(len(self.vocab))
        else:
            params = net.grow(self.params, self.config, len(new), self.rng)
            self.own(params, optim.grow(self.opt_state, len(new), self.iterations))
        return new

    def step(self, X, Y, state, lr=None):
        """One update on a chunk: X, Y are (time, streams) indices; lr, when
        given, replaces config.lr for this update. Returns the state after
        the chunk, for the next one."""
        T = X.shape[0]
        if self.engine is not None:
            loss, state, applied = self.engine.step(X, Y, state, self.iterations + 1, lr)
        else:
            loss, grads, state = (self.pool or net).loss(self.params, self.config, X, Y, state, self.rng)
            applied = math.isfinite(loss) and self.buffers.step(self.config, grads, self.iterations + 1, T, lr)
        if not applied:
            raise Diverged(f"the loss became {loss} at iteration {self.iterations + 1}; try a lower --lr")
        self.iterations += 1
        self.trained_on = "numpy" if self.engine is None else described(self.engine, self.world)
        self.chars_seen += X.size
        self.last_loss = loss / T
        # the seed's low-pass filter, 0.999 per 25-character chunk of one
        # stream; a batch of B streams counts as B chunks, so the curve reads
        # the same per character whatever the batch size
        decay = 0.999 ** X.shape[1]
        self.smooth_loss = self.smooth_loss * decay + self.last_loss * (1 - decay)
        return state

    def train(self, text, options=None, *, callback=None, stop=None, inputs=None, size=None, total=None,
              report_every=1.0, sample_length=200, valid_every=10.0, **fields):  # fmt: skip
        """Train on text and return the final train.Progress.

        text: a str; or a function returning a fresh iterable of str pieces
          for each pass (a file read again); or any iterable of str pieces,
          streamed, which can be read only once (None among them: nothing
          new yet, a reader's word while it waits on a pipe).
        options: a train.Options (how long, the schedule, held-out text, ...);
          its fields may also be given as keywords, which override it:
          model.train(text, max_time=60). Each field is documented there:
          epochs (None: one pass, or with max_time, passes over text that can
          be read again until the time is up), max_time (seconds; the clock
          starts when the first text arrives), schedule, valid_fraction and
          keep_best (None, their default: text read more than once holds out
          a slice and the run ends with the best model on it, holdout.py;
          text read once holds none out), restart, max_vocab, sample_every,
          threads (BLAS threads, 1 by default as on the command line) and
          workers (processes sharing each update, parallel.py). save_every is
          for a session on a model file (rnnpipe.training), not for Model.train.
        callback: called with a train.Progress every report_every seconds,
          with a sample every sample_every iterations (sample_length
          characters), with held-out bits at keep-best's measurement points
          (without keep-best, every valid_every seconds and after each pass),
          with a note (kind "note") when there is something to tell, and at the end;
          it may raise rnnpipe.Stop. rnnpipe.Display(sys.stderr) prints
          progress as the command line does.
        stop: a function polled after every iteration (and while a pipe is
          silent); True ends training.
        inputs: what the text is, as a list of plain values (the command line
          gives each file's name, size and fingerprint); a str describes
          itself. size: characters in one pass, when known (for the schedule
          and progress); total: characters this run will train on, if the
          caller knows better.

        A run that is interrupted (stop, a callback's Stop, or its time limit
        when epochs are given) leaves its position in self.resume, and the
        next train() on the same inputs, with the same batch size, sequence
        length and valid_fraction, finishes it exactly (keep-best: self is the
        best model measured, and the later one the next run trains on from is
        in self.resume.current, holdout.py). A run bounded by time
        alone finishes when its time is up; the next run starts anew (a new
        max_time of training) but goes on where the text does. A run on a
        model trained before starts at the rate the last run ended at
        (schedule.py); restart=True starts a new pass and a fresh schedule.

        The divergence guard: when the loss climbs far above its best in this
        run (or becomes NaN), the weights and optimiser state go back to the
        last good snapshot and the learning rate is divided by 4, with a note;
        after 4 such rollbacks train.Diverged is raised.
        """
        options = (options or Options()).replace(**fields) if fields else (options or Options())
        plan.check_memory(self.config, len(self.vocab))  # before any work, not the OOM killer mid-run
        if options.save_every is not None:
            raise SettingError("save_every", options.save_every, "{name} saves to a model file: train through "
                               "rnnpipe.training.Session, which saves; Model.train does not")  # fmt: skip
        passes, again, inputs, size = plan.passes(text, options, inputs, size)
        epochs = options.passes(again)
        # held-out text and keep-best, by default for many passes
        options = options.settle(epochs, size, block_length(self.config), self.world, self.resume, inputs)
        resume, note = plan.start(self, inputs, options, epochs, again)
        resume, best = holdout.go_on(self, resume, options.keep_best)  # on from the later model the file keeps
        if total is None and size is not None and epochs is not None:
            total = size * epochs
            if resume is not None and again:
                total -= (resume.epoch - 1) * size + resume.trained
        budget, max_time = plan.budget(self, options, resume, total, options.held(size, block_length(self.config)))
        with blas_threads(options.threads), parallel.cores(self, options.workers):
            run = Run(self, options, budget=budget, resume=resume, note=note, inputs=inputs, rereadable=again,
                      pass_chars=size, total=total, callback=callback, stop=stop, max_time=max_time,
                      report_every=report_every, sample_length=sample_length, valid_every=valid_every,
                      best=best)  # fmt: skip
            try:
                stopped = run.fit(passes, epochs)
            except Diverged:
                raise  # with the model at its last good state (guard.py)
            except BaseException:
                run.abandon()  # bad input, say: the file a face saves holds the best model, and the later one
                raise
            return run.finish(stopped)

    # -- using -------------------------------------------------------------

    def stream(self, n, prime="", temperature=1.0, top_k=None, seed=None, skip_unknown=False, *, beam=None,
               lines=None, until=None):  # fmt: skip
        """Yield generated characters one at a time; n=0 means forever. Only
        the generated ones: the prime is never yielded (sample() and
        `rnnpipe sample` write it first).

        Options are checked at once (ValueError): n and top_k, seed must be
        whole numbers (n >= 0, top_k >= 1, seed >= 0), temperature 0 or more
        (0 takes the likeliest character, inf samples uniformly). A prime
        with characters the model has never seen raises ValueError on the
        first character, or with skip_unknown is used without them.

        beam=K searches for the likeliest text instead of sampling
        (sample.beam_search; no temperature or top_k with it). lines=N stops
        right after the Nth newline generated, until=TEXT right after TEXT
        first appears in the generated text; with n, whichever comes first.
        n=None is 300 characters, or with lines or until as many as they
        take, at most sampling.MAX_CHARS (100,000)."""
        options = SampleOptions(n, temperature, top_k, seed, prime, skip_unknown, beam=beam, lines=lines, until=until)
        n = options.length()
        chunk = plan.check_sampling(self.config, len(self.vocab), beam, PRIME_CHUNK)  # before any work
        self.sync()  # the torch engine's weights, into the arrays the search and the sampler read
        if beam is not None:
            chars = beam_search(self.config, self.vocab, self.params, n, prime, beam, skip_unknown, chunk=chunk)
        else:
            forward = None if self.engine is None else self.engine.forward64()
            chars = generate(self.config, self.vocab, self.params, n, prime, temperature, top_k, seed,
                             skip_unknown=skip_unknown, forward=forward, chunk=chunk)  # fmt: skip
        return stop_after(chars, lines, until) if lines is not None or until is not None else chars

    def sample(self, n=None, prime="", temperature=1.0, top_k=None, seed=None, skip_unknown=False, *, beam=None,
               lines=None, until=None, echo_prime=True) -> str:  # fmt: skip
        """The text `rnnpipe sample` writes into a pipe for the same options:
        the prime as given (unknown characters included, with skip_unknown),
        then the generated characters; with echo_prime=False the generated
        characters alone. n=None is 300 characters, or with lines or until
        as many as they take, at most sampling.MAX_CHARS; see stream."""
        options = SampleOptions(n, temperature, top_k, seed, prime, skip_unknown, echo_prime, beam, lines, until)
        return "".join(pieces(self, options))

    def evaluate(self, text):
        """Held-out scores of text; see evaluate.Evaluation."""
        scorer = self.scorer()
        scorer.feed(text)
        return scorer.result()

    def scorer(self):
        """A scorer of text fed in pieces (feed, then result): evaluate.TextScorer,
        or with the torch engine its torchnet.Scorer."""
        self.sync()
        if self.engine is None:
            return TextScorer(self.config, self.vocab, self.params)
        from .engines import torch_engine

        return torch_engine().Scorer(self)
