"""Every core (issue 22): the numpy engine's updates shared among worker
processes (rnnpipe/engines/parallel.py), with the maths of one core: the
same model within float rounding whatever the number of workers, bit for bit
for a given number, whoever computes which shard."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from cli_util import ENV, ROOT, TINY, one_error_line, popen, run, wait_for
from test_session import cell, ip  # noqa: F401  (ip: a real IPython shell with the magics loaded)

import rnnpipe.train
from rnnpipe import Config, Model, cli
from rnnpipe.cells import net
from rnnpipe.engines import parallel, shards
from rnnpipe.train import batches

pytestmark = pytest.mark.skipif(not parallel.available(), reason="workers are forked on Linux only")

TEXT = (ROOT / "examples" / "shakespeare.txt").read_text()[:20000]
SMALL = Config(hidden=16, seq_length=10, batch_size=7)  # 7 streams: shards of unequal length
DROPPED = SMALL.replace(cell="lstm", layers=2, dropout=0.2)
SPLIT = ["--hidden", "64", "--batch-size", "32", "--seq-length", "10"]  # large enough to be split as it is


@pytest.fixture(autouse=True)
def split_small_models(monkeypatch):
    """Models this small are split too (in this process), so that the tests run fast."""
    monkeypatch.setattr(shards, "SHARD_UNITS", 1)


def trained(workers, config=SMALL, text=TEXT, **kw):
    model = Model.new(config)
    model.train(text, workers=workers, **kw)
    return model


def chunk(config, text=TEXT):
    """A model, a chunk (X, Y) and a state that is not zero."""
    model = Model.new(config, text)
    X, Y = next(batches(model.vocab.encode(text), config.seq_length, config.batch_size))
    rng = np.random.default_rng(3)
    state = [tuple(rng.standard_normal(s.shape) * 0.5 for s in layer) for layer in net.zero_state(config, X.shape[1])]
    return model, X, Y, state


def pooled(workers, *args):
    """net.loss(*args) computed by a pool of `workers` (its forked workers taking part)."""
    pool = parallel.Pool(workers)
    try:
        out = pool.loss(*args)
        assert len(pool.children) == workers - 1
        return out
    finally:
        pool.close()


# -- the maths ---------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("workers", [2, 3])
def test_the_sharded_gradient_is_the_whole_batchs(cell, workers):
    config = Config(cell=cell, hidden=12, layers=2, dropout=0.25, dtype="float64", seq_length=6, batch_size=7)
    model, X, Y, state = chunk(config)
    one, drawn = np.random.default_rng(9), np.random.default_rng(9)
    loss, grads, new = net.loss(model.params, config, X, Y, state, one)
    s_loss, s_grads, s_new = pooled(workers, model.params, config, X, Y, state, drawn)
    assert s_loss == pytest.approx(loss, rel=1e-13)
    for name, g in grads.items():
        np.testing.assert_allclose(s_grads[name], g, rtol=1e-10, atol=1e-14, err_msg=name)
    for layer, s_layer in zip(new, s_new, strict=True):
        for a, b in zip(layer, s_layer, strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-15)
    # the dropout masks were one core's: drawn from the model's generator as one core draws them
    assert drawn.bit_generator.state == one.bit_generator.state


def test_the_sharded_gradient_matches_finite_differences():
    config = Config(cell="gru", hidden=10, layers=2, dropout=0.3, dtype="float64", seq_length=5, batch_size=5)
    model, X, Y, state = chunk(config)
    params, pool = model.params, parallel.Pool(2)
    try:

        def loss():
            return pool.loss(params, config, X, Y, state, np.random.default_rng(4))[0]  # the same masks each time

        _, grads, _ = pool.loss(params, config, X, Y, state, np.random.default_rng(4))
        grads = {k: g.copy() for k, g in grads.items()}
        pick, eps = np.random.default_rng(0), 1e-6
        for name, p in params.items():
            for i in pick.integers(0, p.size, 3):
                old = p.flat[i]
                p.flat[i] = old + eps
                up = loss()
                p.flat[i] = old - eps
                down = loss()
                p.flat[i] = old
                assert (up - down) / (2 * eps) == pytest.approx(grads[name].flat[i], rel=1e-5, abs=1e-8), name
    finally:
        pool.close()


def test_one_two_and_three_workers_train_the_same_model():
    models = {w: trained(w, DROPPED, epochs=1) for w in (1, 2, 3)}
    for w in (2, 3):
        assert models[w].iterations == models[1].iterations > 100
        for name, p in models[1].params.items():
            np.testing.assert_allclose(models[w].params[name], p, rtol=1e-4, atol=1e-5, err_msg=name)
        assert models[w].smooth_loss == pytest.approx(models[1].smooth_loss, rel=1e-6)


@pytest.mark.parametrize("workers", [2, 3])
def test_the_same_number_of_workers_trains_the_same_model_bit_for_bit(workers):
    assert trained(workers, DROPPED, epochs=1).to_bytes() == trained(workers, DROPPED, epochs=1).to_bytes()


def test_whichever_process_computes_a_shard_the_model_is_the_same(monkeypatch):
    undisturbed = trained(3, DROPPED, epochs=1)
    # switching between the ways every few updates, as a busy machine may make it (Pool.measure)
    monkeypatch.setattr(parallel, "WINDOW", 2)
    monkeypatch.setattr(parallel, "PROBE", 3)
    switched = []
    measure = parallel.Pool.measure
    monkeypatch.setattr(parallel.Pool, "measure", lambda pool, *a: (measure(pool, *a), switched.append(pool.way)))
    assert trained(3, DROPPED, epochs=1).to_bytes() == undisturbed.to_bytes()
    assert {parallel.SHARE, parallel.ALONE} <= set(switched)
    # the main process computing every shard itself, as it does once a worker has died
    monkeypatch.setattr(parallel.Pool, "start", _start_alone)
    assert trained(3, DROPPED, epochs=1).to_bytes() == undisturbed.to_bytes()


def test_the_pool_keeps_the_faster_way_and_looks_again_when_it_slows(monkeypatch):
    monkeypatch.setattr(parallel, "WINDOW", 1)
    monkeypatch.setattr(parallel, "PROBE", 5)
    pool, ways = parallel.Pool(2), []
    speed = {parallel.SHARE: 1.0, parallel.ALONE: 1.8}  # seconds per character of each way, as a machine gives them

    def windows(n):
        for _ in range(n):
            ways.append(pool.way)
            pool.measure(speed[pool.way], 1)

    windows(12)  # the first window is the start's; then each way measured, then the faster kept
    assert ways == ["share", "share", "alone"] + ["share"] * 5 + ["alone"] + ["share"] * 3
    speed[parallel.SHARE] = 2.5  # a core became busy: sharing slows past computing alone
    ways.clear()
    windows(4)
    assert ways == ["share", "alone", "alone", "alone"]  # looked again at once, and changed


def test_a_fork_that_fails_leaves_the_shards_to_the_main_process(monkeypatch):
    undisturbed = trained(3, DROPPED, epochs=1)
    forks = []

    def fork():
        if forks:  # the second worker cannot be made
            raise BlockingIOError("Resource temporarily unavailable")
        forks.append(real())
        return forks[-1]

    real = os.fork
    monkeypatch.setattr(os, "fork", fork)
    assert trained(3, DROPPED, epochs=1).to_bytes() == undisturbed.to_bytes()
    assert len(forks) == 1 and not alive(forks[0])  # the one made was ended


_start = parallel.Pool.start


def _start_alone(self, *args):
    self.lost = True
    return _start(self, *args)


def test_a_killed_worker_leaves_its_shards_to_the_main_process():
    undisturbed = trained(3, DROPPED, epochs=1)
    model, killed = Model.new(DROPPED), []

    def callback(p):
        if model.iterations >= 20 and not killed and model.pool.children:
            killed.append(next(iter(model.pool.children)))
            os.kill(killed[0], signal.SIGKILL)

    model.train(TEXT, workers=3, epochs=1, callback=callback, report_every=0)
    assert killed and model.to_bytes() == undisturbed.to_bytes()


# -- runs: resume, the guard, held-out text, the defaults --------------------------------


def test_interrupted_and_continued_on_two_workers_is_bit_identical():
    # nothing held out: keep-best (on by default for two passes) would make each stop wait for a measurement
    whole = trained(2, DROPPED, epochs=2, valid_fraction=0)
    model, runs = Model.new(DROPPED), 0
    while True:
        stop_at = model.iterations + 97
        stop = lambda m=model, s=stop_at: m.iterations >= s  # noqa: E731
        final = model.train(TEXT, workers=2, epochs=2, valid_fraction=0, stop=stop)
        model, runs = Model.from_bytes(model.to_bytes()), runs + 1  # through the file, as a new process would
        if final.stopped == "end of input":
            break
    assert runs >= 4
    assert model.to_bytes() == whole.to_bytes()


def test_a_wild_learning_rate_is_rolled_back_with_workers():
    def wild():
        model = Model.new(Config(hidden=32, batch_size=8, seq_length=25), TEXT)
        model.train(TEXT, epochs=2, workers=2)
        model.configure(lr=0.5)  # a hundred times the default: the loss climbs to tens of bits per character
        notes = []
        model.train(TEXT, epochs=2, restart=True, workers=2,
                    callback=lambda p: notes.append(p.note) if p.kind == "note" else None)  # fmt: skip
        return model, notes

    model, notes = wild()
    assert notes and "rolled back to iteration" in notes[0] and model.config.lr <= 0.125
    assert all(np.isfinite(p).all() for p in model.params.values())
    assert model.to_bytes() == wild()[0].to_bytes()


def test_keep_best_with_workers_ends_on_the_best_held_out_model():
    kw = dict(epochs=8, valid_fraction=0.2, keep_best=True)  # measured every so many updates (holdout.py)
    notes = []
    model = Model.new(SMALL.replace(hidden=48, lr=0.02))
    final = model.train(TEXT[:4000] * 3, workers=2, callback=lambda p: notes.append(p), **kw)
    measured = [p.valid_bits for p in notes if p.kind == "valid"]
    assert len(measured) >= 3 and final.valid_bits <= min(measured)
    again = Model.new(SMALL.replace(hidden=48, lr=0.02))
    again.train(TEXT[:4000] * 3, workers=2, **kw)
    assert again.to_bytes() == model.to_bytes()


class Recording(parallel.Pool):
    made: list = []

    def __init__(self, workers):
        Recording.made.append(workers)
        super().__init__(workers)


def test_by_default_a_run_uses_every_core_this_process_may(monkeypatch):
    monkeypatch.setattr(parallel, "Pool", Recording)
    Recording.made = []
    Model.new(SMALL).train(TEXT[:3000])
    cores = len(os.sched_getaffinity(0))
    assert Recording.made == ([cores] if cores > 1 else [])
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})  # as under `taskset -c 0`
    Model.new(SMALL).train(TEXT[:3000])
    Model.new(SMALL).train(TEXT[:3000], workers=1)
    assert Recording.made == ([cores] if cores > 1 else [])
    Model.new(SMALL).train(TEXT[:3000], workers=2)
    assert Recording.made[-1] == 2


def test_where_workers_cannot_be_forked_a_run_uses_one(monkeypatch):
    monkeypatch.setattr(parallel.sys, "platform", "darwin")
    assert parallel.count(None) == parallel.count(4) == 1


def test_a_vocabulary_that_grows_mid_run_forks_the_workers_again(monkeypatch):
    monkeypatch.setattr(rnnpipe.train, "BLOCK_CHARS", 2000)  # several blocks, the later ones with new characters
    text = TEXT[:6000] + TEXT[:6000].upper() + "0123456789" * 200
    starts = []
    start = parallel.Pool.start
    monkeypatch.setattr(parallel.Pool, "start", lambda pool, *a: (starts.append(len(a[0]["by"])), start(pool, *a)))
    two, one = trained(2, SMALL, text, epochs=1), trained(1, SMALL, text, epochs=1)
    assert len(starts) >= 3 and starts == sorted(starts) and starts[-1] == len(two.vocab)  # bigger each time
    for name, p in one.params.items():
        np.testing.assert_allclose(two.params[name], p, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("config", [SMALL.replace(batch_size=1), SMALL.replace(batch_size=64)])
def test_a_batch_too_small_to_split_is_computed_as_on_one_core(monkeypatch, config):
    monkeypatch.setattr(shards, "SHARD_UNITS", 1024)  # as it is: 64 x 16 units make one shard
    forked = []
    monkeypatch.setattr(parallel.Pool, "start", lambda pool, *a: forked.append(a))
    model = trained(2, config, TEXT[:3000], epochs=1)
    assert model.iterations and not forked
    assert model.to_bytes() == trained(1, config, TEXT[:3000], epochs=1).to_bytes()  # the one-core path itself


def test_the_layout_follows_the_batch_the_workers_and_the_models_size(monkeypatch):
    monkeypatch.setattr(shards, "SHARD_UNITS", 1024)
    default = Config()
    assert shards.layout(32, 2, default) == [(0, 8), (8, 16), (16, 24), (24, 32)]  # 2 shards a worker
    assert shards.layout(11, 2, default) == [(0, 6), (6, 11)]  # 11 x 192 units make 2 shards, not 4
    assert shards.layout(32, 8, default) == [(0, 6), (6, 12), (12, 17), (17, 22), (22, 27), (27, 32)]  # 1,024 units
    assert len(shards.layout(32, 2, Config(cell="lstm", hidden=256))) == 2  # 1 MiB of Whh: one shard a worker
    assert shards.layout(3, 2, Config(hidden=64)) == [(0, 3)]


# -- the faces and the processes -----------------------------------------------------------


def test_the_command_line_and_its_refusals(tmp_path):
    out = io.StringIO()
    status = cli.main(["train", "-m", str(tmp_path / "m.msgpack"), *TINY, "-q", "--workers", "2", "--epochs", "1"],
                      stdin=io.StringIO(TEXT[:5000]), stdout=out, stderr=out)  # fmt: skip
    assert status == 0, out.getvalue()
    assert Model.load(tmp_path / "m.msgpack").iterations > 0
    for bad in ("0", "-3"):
        line = one_error_line(run("train", "-m", tmp_path / "x", "--workers", bad), 2)
        assert f"--workers must be at least 1, not {bad}" in line


def test_a_worker_uses_one_blas_thread_whatever_the_main_process_uses(monkeypatch, tmp_path):
    from threadpoolctl import threadpool_info, threadpool_limits

    def report(space, tickets, done, parent, prctl):  # in the worker, in place of its loop
        threads = sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
        (tmp_path / str(os.getpid())).write_text(json.dumps(threads))
        os._exit(0)

    monkeypatch.setattr(parallel, "_worker", report)
    model, X, Y, state = chunk(SMALL)
    pool = parallel.Pool(3)
    with threadpool_limits(2, user_api="blas"):
        pool.start(model.params, SMALL, *X.shape)
        pids = list(pool.children)
        assert wait_for(lambda: all((tmp_path / str(p)).exists() for p in pids), timeout=60)
        pool.close()
        assert {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"} == {2}
    assert [json.loads((tmp_path / str(p)).read_text()) for p in pids] == [[1], [1]]


def children(pid):
    """The pids of pid's living children, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.posix("sends SIGKILL to a trainer")
def test_killing_the_trainer_leaves_no_worker(tmp_path):
    script = (
        "import sys; from rnnpipe import Config, Model\n"
        "text = open(sys.argv[1]).read()\n"
        "Model.new(Config(hidden=64, batch_size=32, seq_length=10)).train(text, epochs=1000, workers=3)\n"
    )
    (tmp_path / "text.txt").write_text(TEXT)
    p = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "text.txt")], env={**ENV, "PYTHONPATH": str(ROOT)}
    )
    try:
        assert wait_for(lambda: len(children(p.pid)) == 2, timeout=60), "the workers did not start"
        workers = children(p.pid)
        p.kill()
        p.wait(timeout=60)
        assert wait_for(lambda: not any(alive(w) for w in workers), timeout=60), "a worker outlived the trainer"
    finally:
        if p.poll() is None:
            p.kill()


@pytest.mark.posix("sends SIGINT and SIGTERM to a trainer's process group, as a terminal and `kill %1` do")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_whole_group_is_the_trainers_alone_to_act_on(tmp_path, signum):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    command = [*SPLIT, "--epochs", "30", "--workers", "2", corpus]
    whole = tmp_path / "whole.msgpack"
    assert run("train", "-m", whole, *command, "-q", timeout=300).returncode == 0
    model = tmp_path / "m.msgpack"
    p = popen("train", "-m", model, *command, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
    assert wait_for(lambda: len(children(p.pid)) == 1, timeout=60), "the worker did not start"
    (worker,) = children(p.pid)

    def holds_ours():  # the files the worker has open in tmp_path: the model's lock, the text
        found = []
        for fd in os.listdir(f"/proc/{worker}/fd"):
            with contextlib.suppress(OSError):  # closed meanwhile
                found += [f for f in [os.readlink(f"/proc/{worker}/fd/{fd}")] if str(tmp_path) in f]
        return found

    # it closes what it was forked with as it starts (os.fork copies every open file)
    assert wait_for(lambda: not holds_ours(), timeout=60), holds_ours()
    os.killpg(p.pid, signum)  # every process of the group
    err = p.communicate(timeout=120)[1].decode()
    assert p.returncode == 128 + signum, err
    assert not alive(worker)
    assert Model.load(model).resume is not None  # saved where it stopped
    assert run("train", "-m", model, *command, timeout=300).returncode == 0
    assert Model.load(model).to_bytes() == Model.load(whole).to_bytes()


def test_the_notebook_takes_workers_too(ip, monkeypatch, tmp_path):  # noqa: F811  (the fixture imported above)
    monkeypatch.setattr(parallel, "Pool", Recording)
    Recording.made = []
    for n in (1, 3):
        result, _ = cell(ip, f"-m {tmp_path / str(n)} {' '.join(TINY)} --workers {n} --epochs 1", TEXT[:5000])
        result.raise_error()
    assert Recording.made == [3]
    one, three = Model.load(tmp_path / "1"), Model.load(tmp_path / "3")
    assert one.iterations == three.iterations > 0
    for name, p in one.params.items():
        np.testing.assert_allclose(three.params[name], p, rtol=1e-4, atol=1e-5, err_msg=name)


def test_the_torch_engine_is_left_alone():
    pytest.importorskip("torch")
    model = Model.new(SMALL)
    model.use("torch", "cpu")
    seen = []
    model.train(TEXT[:3000], workers=2, callback=lambda p: seen.append(model.pool))
    assert seen and not any(seen)
    assert math.isfinite(model.smooth_loss)
