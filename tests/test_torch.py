"""The torch engine (issue 12): the numpy engine's maths on torch's fused
RNN modules, the same model file both ways, DDP under torchrun, export and
import. Skipped, with the reason, where torch is not installed (a plain
install); CI installs the extra (.ci/run)."""

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from cli_util import ENV, ROOT, info, run

from rnnpipe import Config, Model
from rnnpipe.cells import net
from rnnpipe.train import Diverged

if importlib.util.find_spec("torch") is None:
    pytest.skip("the torch engine needs PyTorch: pip install 'rnnpipe[torch]'", allow_module_level=True)


class _Torch:
    """torch, imported when a test here first uses it, not when pytest
    collects this file: the peak-memory tests (test_reliability.py) measure a
    child's peak RSS through wait4, which on Linux counts the parent's
    memory at the child's exec, and torch in the pytest process adds
    hundreds of MiB to it."""

    threads_set = False

    def __getattr__(self, name):
        import torch

        if not self.threads_set:
            # one thread, as rnnpipe's --threads 1: a second one on a busy 2-core machine is many times slower
            torch.set_num_threads(1)
            _Torch.threads_set = True
        return getattr(torch, name)


torch = _Torch()

TEXT = (ROOT / "examples" / "shakespeare.txt").read_text()
V, T, B = 9, 6, 3


def _model(cell, layers, **changes):
    """A float64 model with weights larger than the init's, so every nonlinearity is exercised."""
    config = Config(cell=cell, hidden=5, layers=layers, dtype="float64", **changes)
    model = Model.new(config, text="abcdefghi")
    rng = np.random.default_rng(7)
    for k in model.params:
        model.params[k][...] = rng.standard_normal(model.params[k].shape) * 0.5
    return model, rng


def _chunk(rng, config):
    X, Y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    state = [tuple(rng.standard_normal(s.shape) * 0.5 for s in layer) for layer in net.zero_state(config, B)]
    return X, Y, state


CELLS = [(cell, layers) for cell in ("rnn", "lstm", "gru") for layers in (1, 2)]


@pytest.mark.parametrize("cell,layers", CELLS)
def test_forward_parity(cell, layers):
    model, rng = _model(cell, layers)
    X, _, state = _chunk(rng, model.config)
    hs, after, _ = net.forward(model.params, model.config, X, state)
    logits = net.logits(model.params, hs)
    model.use("torch", "cpu")
    logits_t, after_t = model.engine.logits(X, state)
    assert np.abs(logits - logits_t).max() < 1e-5
    for a, b in zip(after, after_t, strict=True):
        for x, y in zip(a, b, strict=True):
            assert np.abs(x - y).max() < 1e-5


@pytest.mark.parametrize("cell,layers", CELLS)
def test_one_steps_gradients_agree(cell, layers):
    model, rng = _model(cell, layers)
    X, Y, state = _chunk(rng, model.config)
    loss, grads, _ = net.loss(model.params, model.config, X, Y, state)
    model.use("torch", "cpu")
    loss_t, grads_t = model.engine.gradients(X, Y, state)
    assert abs(loss - float(loss_t)) < 1e-4
    assert set(grads_t) == set(grads)
    for k in grads:
        assert np.abs(grads[k] - grads_t[k]).max() < 1e-4, k


@pytest.mark.parametrize("optimizer", ["adam", "adagrad"])
@pytest.mark.parametrize("weight_decay", [0.0, 3.0])
def test_one_update_honours_lr_as_optim_step_does(optimizer, weight_decay):
    # a schedule passes each update's rate; None means config.lr
    for lr in (None, 0.0123):
        a, rng = _model("gru", 2, optimizer=optimizer, weight_decay=weight_decay)
        b = Model.from_bytes(a.to_bytes())
        b.use("torch", "cpu")
        X, Y, state = _chunk(rng, a.config)
        a.step(X, Y, state, lr)
        b.step(X, Y, state, lr)
        b.sync()
        for k in a.params:
            assert np.abs(a.params[k] - b.params[k]).max() < 1e-10, (lr, k)
        for k in a.opt_state:
            assert np.abs(a.opt_state[k] - b.opt_state[k]).max() < 1e-10, (lr, k)


def test_the_model_arrays_change_on_sync_only():
    model, rng = _model("lstm", 1)
    model.use("torch", "cpu")
    before = {k: v.copy() for k, v in model.params.items()}
    X, Y, state = _chunk(rng, model.config)
    model.step(X, Y, state)
    assert all(np.array_equal(before[k], model.params[k]) for k in before)  # the device holds the update
    model.sync()
    assert not all(np.array_equal(before[k], model.params[k]) for k in before)
    # written in place (a rollback does so), the arrays reach the device after touched()
    for k in before:
        model.params[k][...] = before[k]
    model.touched()
    z, _ = model.engine.logits(X, state)
    hs, _, _ = net.forward(before, model.config, X, state)
    assert np.abs(z - net.logits(before, hs)).max() < 1e-12


def test_a_nan_loss_applies_nothing_and_raises_diverged():
    model, rng = _model("gru", 1)
    model.use("torch", "cpu")
    X, Y, state = _chunk(rng, model.config)
    model.params["Why"][0, 0] = np.nan
    model.touched()
    with pytest.raises(Diverged):
        model.step(X, Y, state)
    assert model.iterations == 0


def _train(engines, optimizer, cell="gru", dropout=0.0):
    """A float64 model trained on two pieces of text (the second brings new
    characters, so Adam's per-slot counts are used) with one engine each."""
    config = Config(cell=cell, hidden=12, layers=2, dtype="float64", batch_size=4, seq_length=10,
                    optimizer=optimizer, dropout=dropout)  # fmt: skip
    model = Model.new(config)
    for engine, piece in zip(engines, (TEXT[:1500], TEXT[1500:3000]), strict=True):
        model.use(engine, "cpu")
        model.train(piece)
    model.sync()
    return model


@pytest.mark.parametrize("optimizer", ["adam", "adagrad"])
def test_torch_then_numpy_equals_numpy_then_torch(optimizer):
    assert set(TEXT[1500:3000]) - set(TEXT[:1500])  # the vocabulary grows after training began
    a = _train(["torch", "numpy"], optimizer)
    b = _train(["numpy", "torch"], optimizer)
    c = _train(["numpy", "numpy"], optimizer)
    assert a.iterations == b.iterations == c.iterations > 0
    for other in (b, c):
        for k in a.params:
            assert np.abs(a.params[k] - other.params[k]).max() < 1e-8, k
        for k in a.opt_state:
            assert np.abs(a.opt_state[k] - other.opt_state[k]).max() < 1e-8, k
    assert abs(a.smooth_loss - c.smooth_loss) < 1e-8


def test_threads_sets_torchs_cpu_threads_too():
    from rnnpipe import options

    before = torch.get_num_threads()
    with options.blas_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_dropout_trains_with_torchs_masks():
    # documented: the masks are torch's, not the numpy engine's, so only the quality compares
    model = _train(["torch", "torch"], "adam", cell="lstm", dropout=0.3)
    assert model.smooth_loss < np.log(len(model.vocab))


def test_sample_with_the_torch_engine_is_the_numpy_engines_text():
    model = _train(["torch", "torch"], "adam")
    text = model.use("numpy").sample(300, prime="ROMEO", seed=3)
    assert model.use("torch", "cpu").sample(300, prime="ROMEO", seed=3) == text


def test_eval_with_the_torch_engine_scores_as_numpy_does():
    model = _train(["numpy", "numpy"], "adam")
    held = TEXT[-3000:]
    numpy_bits = model.evaluate(held).bits_per_char
    assert abs(model.use("torch", "cpu").evaluate(held).bits_per_char - numpy_bits) < 1e-4


# -- the command line ---------------------------------------------------------------


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT[:6000])
    return path


SMALL = ["--hidden", "16", "--seq-length", "10", "--batch-size", "4"]


def test_train_with_torch_continue_with_numpy(tmp_path, corpus):
    model = tmp_path / "m.msgpack"
    r = run("train", "-m", model, "--engine", "torch", "--device", "cpu", *SMALL, corpus)
    assert r.returncode == 0, r.stderr
    first = info(model)
    r = run("train", "-m", model, corpus)
    assert r.returncode == 0, r.stderr
    second = info(model)
    assert second["iterations"] == 2 * first["iterations"]
    assert second["smooth_loss_bits"] < first["smooth_loss_bits"]
    for engine in ("numpy", "torch"):
        r = run("eval", "-m", model, "--engine", engine, "--json", corpus)
        assert r.returncode == 0, r.stderr
    r = run("sample", "-m", model, "--engine", "torch", "-n", "50", "--seed", "1")
    assert r.returncode == 0 and r.stdout == run("sample", "-m", model, "-n", "50", "--seed", "1").stdout


def test_a_device_torch_cannot_use_is_one_line(tmp_path, corpus):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = run("train", "-m", tmp_path / "m.msgpack", "--engine", "torch", "--device", "cuda", corpus)
    err = r.stderr.decode()
    assert r.returncode == 1 and err.count("\n") == 1 and err.startswith("rnnpipe: error: --device cuda"), err
    assert not (tmp_path / "m.msgpack").exists()


# -- export and import ----------------------------------------------------------------


def _readme_lines():
    """The README's lines that load an export into plain torch modules."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(import torch\n.*?)```", readme, re.S).group(1)
    return block


def test_export_loads_into_plain_torch_modules_with_the_readmes_lines(tmp_path, corpus):
    model, pt = tmp_path / "m.msgpack", tmp_path / "m.pt"
    assert run("train", "-m", model, "--cell", "lstm", "--layers", "2", *SMALL, corpus).returncode == 0
    r = run("export", "-m", model, "--torch", pt)
    assert r.returncode == 0, r.stderr
    held = TEXT[-4000:]
    (tmp_path / "held.txt").write_text(held)
    numpy_bits = json.loads(run("eval", "-m", model, "--json", tmp_path / "held.txt").stdout)["bits_per_char"]

    lines = _readme_lines()
    assert len([line for line in lines.splitlines() if line and not line.startswith("#")]) == 5
    env = {}
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(lines.replace('"model.pt"', repr(str(pt))), env)  # the README's own lines
    finally:
        os.chdir(old)
    d, rnn, head = env["d"], env["rnn"], env["head"]
    assert set(d) == {"state_dict", "vocab", "config"}
    assert any(k.startswith("rnn.weight_ih_l") for k in d["state_dict"]) and "head.weight" in d["state_dict"]
    # held-out bits/char with those modules alone: one stream, the state carried
    vocab = {c: i for i, c in enumerate(d["vocab"])}
    ix = torch.tensor([vocab[c] for c in held if c in vocab])
    with torch.no_grad():
        x = torch.nn.functional.one_hot(ix[:-1], len(vocab)).float()[:, None]
        logits = head(rnn(x)[0][:, 0])
        nats = torch.nn.functional.cross_entropy(logits.double(), ix[1:], reduction="mean").item()
    assert abs(nats / np.log(2) - numpy_bits) < 1e-4


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_import_round_trips_exactly(tmp_path, cell):
    from rnnpipe.engines import export

    a = Model.new(Config(cell=cell, layers=2, hidden=16, seq_length=10, batch_size=4))
    a.train(TEXT[:2000])
    pt = tmp_path / "m.pt"
    pt.write_bytes(export.to_bytes(a))
    b = export.from_file(pt)
    assert a.vocab.chars == b.vocab.chars and a.config == b.config
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k]), k
    # and exported again, the very same tensors
    (tmp_path / "again.pt").write_bytes(export.to_bytes(b))
    data, again = (torch.load(p, weights_only=True) for p in (pt, tmp_path / "again.pt"))
    assert all(torch.equal(data["state_dict"][k], again["state_dict"][k]) for k in data["state_dict"])


def test_export_and_import_commands(tmp_path, corpus):
    model, pt, back = tmp_path / "m.msgpack", tmp_path / "m.pt", tmp_path / "back.msgpack"
    assert run("train", "-m", model, "--cell", "lstm", *SMALL, corpus).returncode == 0
    assert run("export", "-m", model, "--torch", pt).returncode == 0
    r = run("import", "--torch", pt, "-m", back)
    assert r.returncode == 0, r.stderr
    a, b = Model.load(model), Model.load(back)
    assert a.vocab.chars == b.vocab.chars and a.config == b.config
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    r = run("import", "--torch", pt, "-m", back)  # never over an existing model
    assert r.returncode == 1 and b"exists; import makes a new model" in r.stderr


def test_import_takes_a_torch_trained_state_dict_with_both_biases(tmp_path):
    torch.manual_seed(0)
    rnn, head = torch.nn.GRU(5, 8, 1, dtype=torch.float64), torch.nn.Linear(8, 5, dtype=torch.float64)
    state = {f"rnn.{k}": v for k, v in rnn.state_dict().items()}
    state |= {f"head.{k}": v for k, v in head.state_dict().items()}
    torch.save({"state_dict": state, "vocab": list("abcde")}, tmp_path / "g.pt")
    r = run("import", "--torch", tmp_path / "g.pt", "-m", tmp_path / "g.msgpack")
    assert r.returncode == 0, r.stderr
    model = Model.load(tmp_path / "g.msgpack")
    assert (model.config.cell, model.config.hidden, model.config.dtype) == ("gru", 8, "float64")
    X = np.array([[0], [3], [1], [4]])
    hs, _, _ = net.forward(model.params, model.config, X, net.zero_state(model.config, 1))
    with torch.no_grad():
        want = head(rnn(torch.nn.functional.one_hot(torch.from_numpy(X), 5).double())[0]).reshape(-1, 5)
    assert np.abs(net.logits(model.params, hs) - want.numpy()).max() < 1e-12


# -- DDP under torchrun ----------------------------------------------------------------

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
DDP_ENV = {**ENV, "OMP_NUM_THREADS": "1"}


def test_two_gloo_ranks_train_the_one_process_model(tmp_path, corpus):
    model, trace = tmp_path / "ddp.msgpack", tmp_path / "trace"
    trace.mkdir()
    args = ["--dtype", "float64", "--hidden", "12", "--seq-length", "10", "--batch-size", "6"]
    r = subprocess.run(
        [*TORCHRUN, str(ROOT / "tests" / "ddp_trace.py"), str(trace), "train", "-m", str(model),
         "--engine", "torch", "--device", "cpu", *args, str(corpus)],
        capture_output=True, env=DDP_ENV, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    assert "on 2 ranks" in r.stderr.decode()
    # each rank trained its own contiguous streams: 3 of the 6, every chunk
    ranks = [json.loads((trace / f"rank{k}.json").read_text()) for k in (0, 1)]
    assert {tuple(s) for s in ranks[0]["shares"]} == {(0, 3, 6)}
    assert {tuple(s) for s in ranks[1]["shares"]} == {(3, 6, 6)}
    assert len(ranks[0]["shares"]) == len(ranks[1]["shares"]) == info(model)["iterations"]
    # the numpy sampler loads it, the loss went down...
    trained = Model.load(model)
    assert trained.sample(20, seed=1)
    assert trained.smooth_loss < np.log(len(trained.vocab)) - 0.3
    # ...and it is the model one numpy process trains with the 6 streams
    alone = Model.new(Config(cell="gru", hidden=12, seq_length=10, batch_size=6, dtype="float64"))
    alone.train(corpus.read_text(), inputs=[{"name": "x"}])
    assert alone.iterations == trained.iterations
    for k in alone.params:
        assert np.abs(alone.params[k] - trained.params[k]).max() < 1e-8, k


def _trace_run(trace, *args, timeout=300):
    return subprocess.run(
        [*TORCHRUN, str(ROOT / "tests" / "ddp_trace.py"), str(trace), *map(str, args)],
        capture_output=True, env=DDP_ENV, timeout=timeout,
    )  # fmt: skip


def test_only_rank_0_reads_and_saves_the_model_file(tmp_path, corpus):
    # rank 1 is given a model path in a folder that does not exist: it never touches it
    (tmp_path / "0").mkdir()
    model = tmp_path / "0" / "m.msgpack"
    assert run("train", "-m", model, *SMALL, "--dtype", "float64", corpus).returncode == 0
    before = info(model)["iterations"]
    r = _trace_run(tmp_path, "train", "-m", tmp_path / "{rank}" / "m.msgpack", "--engine", "torch", "--device", "cpu",
                   corpus)  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    assert info(model)["iterations"] == 2 * before  # continued from rank 0's file, the batch split over 2
    assert not (tmp_path / "1").exists()
    assert r.stderr.decode().count("end of input: trained on") == 1  # rank 0 alone reports


def test_ranks_reading_different_text_refuse_to_start(tmp_path, corpus):
    for k in (0, 1):
        (tmp_path / f"t{k}.txt").write_text(TEXT[k * 3000 : k * 3000 + 3000])
    model = tmp_path / "m.msgpack"
    r = _trace_run(tmp_path, "train", "-m", model, "--engine", "torch", "--device", "cpu", *SMALL,
                   tmp_path / "t{rank}.txt", timeout=120)  # fmt: skip
    assert r.returncode != 0
    assert "every rank must read the same text" in r.stderr.decode()
    assert not model.exists()


@pytest.mark.posix("sends SIGINT to torchrun")
def test_ctrl_c_on_torchrun_saves_once_and_every_rank_exits(tmp_path, corpus):
    model = tmp_path / "ddp.msgpack"
    big = tmp_path / "big.txt"
    big.write_text(TEXT)
    p = subprocess.Popen(
        [*TORCHRUN, "-m", "rnnpipe", "train", "-m", str(model), "--engine", "torch", "--device", "cpu",
         "--save-every", "1000", "--dtype", "float64", *SMALL, str(big)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=DDP_ENV, start_new_session=True,
    )  # fmt: skip
    lock = tmp_path / "ddp.msgpack.lock"
    deadline = time.monotonic() + 120
    while not lock.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(4)  # some training
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    err = err.decode()
    assert model.exists(), err
    assert not lock.exists(), err
    assert err.count("interrupted: trained on") == 1, err  # rank 0 saved once and said so
    assert info(model)["resume"] is not None  # where it stopped, to continue from
    # no rank left behind
    ps = subprocess.run(["pgrep", "-f", str(big)], capture_output=True)
    assert ps.stdout == b"", ps.stdout
    # one numpy process continues the pass exactly where the 2 ranks stopped
    r = run("train", "-m", model, big, timeout=300)
    assert r.returncode == 0, r.stderr
    alone = tmp_path / "alone.msgpack"
    assert run("train", "-m", alone, "--dtype", "float64", *SMALL, big, timeout=300).returncode == 0
    a, b = Model.load(model), Model.load(alone)
    assert a.iterations == b.iterations and a.resume is None
    for k in a.params:
        assert np.abs(a.params[k] - b.params[k]).max() < 1e-8, k


def test_joining_the_ranks_imports_what_ddp_imports_before_the_clock_starts():
    # DistributedDataParallel() imports torch._dynamo (about 1 s of CPU), and the
    # engine builds its DDP module on the first step, inside the run's clock
    # and --max-time: ddp.start has it imported already (docs/scaling.md)
    code = (
        "import sys; from rnnpipe.engines import ddp; assert 'torch._dynamo' not in sys.modules; "
        "ddp.start('cpu'); print('torch._dynamo' in sys.modules); ddp.stop()"
    )
    env = {**DDP_ENV, "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(29400 + os.getpid() % 500)}  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"


def test_numpy_engine_under_torchrun_is_refused(tmp_path, corpus):
    r = subprocess.run(
        [*TORCHRUN, "-m", "rnnpipe", "train", "-m", str(tmp_path / "m.msgpack"), str(corpus)],
        capture_output=True, env=DDP_ENV, timeout=120,
    )  # fmt: skip
    assert r.returncode != 0
    assert "under torchrun, train with --engine torch" in r.stderr.decode()


def test_the_magics_take_the_engine(tmp_path):
    pytest.importorskip("IPython")
    from IPython.utils.capture import capture_output
    from test_magic import TINY, get_ipython, train

    shell = get_ipython()
    shell.run_line_magic("load_ext", "rnnpipe_magic")
    try:
        model = tmp_path / "k.msgpack"
        train(shell, f"-m {model} {TINY} --dtype float64 --engine torch --device cpu --max-time 1")
        with capture_output():
            shell.run_line_magic("charrnn_sample", f"-m {model} -n 40 --seed 2 --engine torch -o a")
            shell.run_line_magic("charrnn_sample", f"-m {model} -n 40 --seed 2 -o b")
        assert shell.user_ns["a"] == shell.user_ns["b"] and len(shell.user_ns["a"]) == 40
        assert Model.load(model).iterations > 0
    finally:
        with capture_output():
            shell.run_line_magic("unload_ext", "rnnpipe_magic")


def test_the_divergence_guard_rolls_back_the_torch_engine_as_numpy():
    notes = {}
    for engine in ("numpy", "torch"):
        # no weight decay: at this rate it zeroes every weight at each update,
        # and both engines give up (Diverged) instead of going on after a rollback
        model = Model.new(Config(hidden=32, batch_size=8, seq_length=10, lr=1e6, dtype="float64", weight_decay=0.0))
        model.use(engine, "cpu")
        seen = notes[engine] = []
        model.train(TEXT[:8000], epochs=2, callback=lambda p, seen=seen: p.kind == "note" and seen.append(p.note))
    assert notes["torch"] and notes["torch"][0] == notes["numpy"][0]
    assert "rolled back to iteration 0" in notes["torch"][0]


def test_the_default_device_is_cuda_when_available_else_cpu():
    from rnnpipe.engines import torchnet

    assert torchnet.device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert torchnet.device("cpu").type == "cpu"


def test_the_torch_engine_leaves_the_process_random_numbers_alone():
    # dropout masks come from the engine's own generator state, not a reseeded global one
    text = TEXT[:4000]
    before = torch.get_rng_state()
    runs = []
    for _ in range(2):
        model = Model.new(hidden=16, layers=2, dropout=0.3, seq_length=10, batch_size=4).use("torch", "cpu")
        model.train(text)
        model.sync()
        runs.append(model.to_bytes())
    assert torch.equal(torch.get_rng_state(), before)
    assert runs[0] == runs[1]  # and its own state is seeded the same way each time: the same masks


def test_training_says_which_device_the_torch_engine_trains_on(tmp_path):
    r = run("train", "-m", tmp_path / "m.msgpack", "--hidden", "8", "--engine", "torch", "--device", "cpu",
            input=TEXT[:2000])  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stderr.decode().splitlines()[0] == "rnnpipe: the torch engine trains on cpu"
    q = run("train", "-m", tmp_path / "m.msgpack", "--engine", "torch", "--device", "cpu", "-q", input=TEXT[:2000])
    assert q.returncode == 0 and q.stderr == b""  # quiet is quiet
