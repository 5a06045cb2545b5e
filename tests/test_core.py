"""The engine against independent references: the seed's own code, plain
msgpack + numpy reading the documented file format, and exact resumption."""

import hashlib
import math
import os
import subprocess
import sys

import msgpack
import numpy as np
import pytest

from rnnpipe import SEED, Config, Model, ModelFormatError
from rnnpipe.cells import net
from rnnpipe.modelfile import VERSION
from rnnpipe.train import batches
from rnnpipe.vocab import Decoder, Vocab, decode


def seed_loss_fun(inputs, targets, hprev, Wxh, Whh, Why, bh, by):
    """The notebook's lossFun, ported to Python 3 and nothing else changed
    (one-hot columns, per-step products, gradients clipped at the end)."""
    vocab_size = Wxh.shape[1]
    xs, hs, ys, ps = {}, {}, {}, {}
    hs[-1] = np.copy(hprev)
    loss = 0
    for t in range(len(inputs)):
        xs[t] = np.zeros((vocab_size, 1))
        xs[t][inputs[t]] = 1
        hs[t] = np.tanh(np.dot(Wxh, xs[t]) + np.dot(Whh, hs[t - 1]) + bh)
        ys[t] = np.dot(Why, hs[t]) + by
        ps[t] = np.exp(ys[t]) / np.sum(np.exp(ys[t]))
        loss += -np.log(ps[t][targets[t], 0])
    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
    dbh, dby = np.zeros_like(bh), np.zeros_like(by)
    dhnext = np.zeros_like(hs[0])
    for t in reversed(range(len(inputs))):
        dy = np.copy(ps[t])
        dy[targets[t]] -= 1
        dWhy += np.dot(dy, hs[t].T)
        dby += dy
        dh = np.dot(Why.T, dy) + dhnext
        dhraw = (1 - hs[t] * hs[t]) * dh
        dbh += dhraw
        dWxh += np.dot(dhraw, xs[t].T)
        dWhh += np.dot(dhraw, hs[t - 1].T)
        dhnext = np.dot(Whh.T, dhraw)
    for dparam in [dWxh, dWhh, dWhy, dbh, dby]:
        np.clip(dparam, -5, 5, out=dparam)
    return loss, dWxh, dWhh, dWhy, dbh, dby, hs[len(inputs) - 1]


def test_rnn_matches_the_seeds_lossfun():
    config = SEED.replace(hidden=12, dtype="float64")
    rng = np.random.default_rng(3)
    V = 9
    params = net.init(config, V, rng)
    for k in params:  # weights large enough that clipping and tanh matter
        params[k] = rng.standard_normal(params[k].shape) * 0.7
    inputs, targets = rng.integers(0, V, 25), rng.integers(0, V, 25)
    hprev = rng.standard_normal((12, 1)) * 0.5
    col = {k: v.reshape(-1, 1) for k, v in params.items() if k in ("0.bh", "by")}
    want = seed_loss_fun(
        inputs, targets, hprev, params["0.Wxh"], params["0.Whh"], params["Why"], col["0.bh"], col["by"]
    )
    loss, grads, state = net.loss(params, config, inputs[:, None], targets[:, None], [(hprev.T.copy(),)])
    for g in grads.values():
        np.clip(g, -5, 5, out=g)  # the seed clips inside lossFun, rnnpipe in Adagrad
    assert loss == pytest.approx(want[0], rel=1e-12)
    for name, ref in zip(["0.Wxh", "0.Whh", "Why", "0.bh", "by"], want[1:6], strict=True):
        np.testing.assert_allclose(grads[name], ref.reshape(grads[name].shape), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(state[0][0], want[6].T, rtol=1e-12)


def test_first_loss_is_ln_vocab(kafka):
    model = Model.new(SEED, kafka)
    assert len(model.vocab) == 80  # code points; the seed's 81 counted the bytes of "ç"
    assert model.smooth_loss == pytest.approx(math.log(80))
    model.train(kafka[:26])
    assert model.iterations == 1
    # the seed prints 109.861223 = 25 ln 81 for its 81 byte values
    assert model.last_loss * 25 == pytest.approx(25 * math.log(80), rel=1e-3)


def test_seed_configuration_learns_kafka_like_the_seed(kafka):
    model = Model.new(SEED, kafka)
    model.train(kafka, epochs=2, valid_fraction=0, stop=lambda: model.iterations >= 8000)  # the seed holds none out
    assert model.iterations == 8000
    # the seed's log reads 53.6 per 25 characters (2.14 per character) at 8000
    assert model.smooth_loss < 2.2


def test_batches_are_contiguous_streams():
    text = "".join(chr(65 + i % 26) for i in range(103))
    vocab = Vocab(sorted(set(text)))
    ix = vocab.encode(text)
    chunks = list(batches(ix, seq_length=10, batch_size=4))
    L = 102 // 4
    assert [X.shape for X, _ in chunks] == [(10, 4), (10, 4), (5, 4)]
    for b in range(4):
        stream = np.concatenate([X[:, b] for X, _ in chunks])
        targets = np.concatenate([Y[:, b] for _, Y in chunks])
        assert vocab.decode(stream) == text[b * L : b * L + L]
        assert vocab.decode(targets) == text[b * L + 1 : b * L + L + 1]


def test_short_input_trains_with_fewer_streams():
    model = Model.new(Config(hidden=8, seq_length=10, batch_size=16), "abc")
    model.train("abcabcabcabcabcabcabcabcab")  # 26 chars: 2 streams of 12
    assert model.iterations == 2
    assert model.chars_seen == 24


def tiny(cell, dtype, **kw):
    return Config(cell=cell, hidden=10, layers=2, dropout=0.2, seq_length=7, batch_size=3, dtype=dtype, lr=0.01, **kw)


T1 = "the cat sat on the mat. " * 8
T2 = "THE DOG, 42 of them; sat! " * 6  # new characters: the vocabulary grows


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_resume_in_a_new_process_is_exact(tmp_path, cell, dtype):
    optimizer = "adagrad" if cell == "rnn" else "adam"
    straight = Model.new(tiny(cell, dtype, optimizer=optimizer))
    straight.train(T1)
    straight.train(T2)

    first = Model.new(tiny(cell, dtype, optimizer=optimizer))
    first.train(T1)
    first.save(tmp_path / "m.msgpack")
    code = (
        "import sys; from rnnpipe import Model; m = Model.load(sys.argv[1]); m.train(sys.argv[2]); m.save(sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.msgpack"), T2], check=True)
    resumed = Model.load(tmp_path / "m.msgpack")

    assert resumed.iterations == straight.iterations > 0
    assert resumed.vocab.chars == straight.vocab.chars
    assert resumed.rng.bit_generator.state == straight.rng.bit_generator.state
    for k in straight.params:
        assert resumed.params[k].dtype == np.dtype(dtype)
        assert np.array_equal(resumed.params[k], straight.params[k]), k
    for k in straight.opt_state:
        assert np.array_equal(resumed.opt_state[k], straight.opt_state[k]), k
    assert resumed.to_bytes() == straight.to_bytes()
    assert resumed.sample(50, seed=1) == straight.sample(50, seed=1)


def test_round_trip_keeps_everything(tmp_path):
    model = Model.new(Config(cell="gru", hidden=8, seq_length=5, batch_size=2), T1)
    model.train(T1)
    model.save(tmp_path / "m.msgpack")
    back = Model.load(tmp_path / "m.msgpack")
    assert back.config == model.config
    assert back.vocab.chars == model.vocab.chars
    assert (back.iterations, back.chars_seen, back.smooth_loss, back.last_loss) == (
        model.iterations,
        model.chars_seen,
        model.smooth_loss,
        model.last_loss,
    )
    assert back.to_bytes() == model.to_bytes()
    assert back.sample(40, seed=7, temperature=0.8) == model.sample(40, seed=7, temperature=0.8)


def test_plain_msgpack_reader_following_the_doc_computes_the_same_loss(tmp_path):
    # docs/model-format.md's recipe, with no rnnpipe code: the seed's forward pass
    model = Model.new(SEED.replace(hidden=16, dtype="float64"), T1)
    model.train(T1 * 3)
    model.save(tmp_path / "m.msgpack")
    outer = msgpack.unpackb((tmp_path / "m.msgpack").read_bytes(), raw=False)
    assert (outer["format"], outer["version"]) == ("rnnpipe-model", VERSION)
    assert hashlib.sha256(outer["model"]).digest() == outer["sha256"]
    doc = msgpack.unpackb(outer["model"], raw=False)
    W = {k: np.frombuffer(a["data"], a["dtype"]).reshape(a["shape"]) for k, a in doc["params"].items()}
    vocab = doc["vocab"]
    text = "the mat sat on the cat. "
    h, nats = np.zeros(16), 0.0
    for a, b in zip(text[:-1], text[1:], strict=True):
        h = np.tanh(W["0.Wxh"][:, vocab.index(a)] + W["0.Whh"] @ h + W["0.bh"])
        y = W["Why"] @ h + W["by"]
        nats -= y[vocab.index(b)] - y.max() - np.log(np.exp(y - y.max()).sum())
    assert model.evaluate(text).nats_per_char == pytest.approx(nats / (len(text) - 1), rel=1e-12)


def seal(body):
    """An envelope around a model body, as docs/model-format.md describes."""
    data = msgpack.packb(body, use_bin_type=True)
    doc = {"format": "rnnpipe-model", "version": VERSION, "sha256": hashlib.sha256(data).digest(), "model": data}
    return msgpack.packb(doc, use_bin_type=True)


def open_body(data):
    return msgpack.unpackb(msgpack.unpackb(data, raw=False)["model"], raw=False)


def array(a):
    a = np.asarray(a, "<f4")
    return {"dtype": "<f4", "shape": list(a.shape), "data": a.tobytes()}


def test_a_file_written_by_hand_from_the_doc_loads(tmp_path):
    vocab, H = ["a", "b", "\n"], 2
    rng = np.random.default_rng(0)
    shapes = {"0.Wxh": (H, 3), "0.Whh": (H, H), "0.bh": (H,), "Why": (3, H), "by": (3,)}
    params = {k: array(rng.standard_normal(s)) for k, s in shapes.items()}
    body = {
        "config": {
            "cell": "rnn",
            "hidden": H,
            "layers": 1,
            "dropout": 0.0,
            "seq_length": 4,
            "batch_size": 1,
            "optimizer": "adagrad",
            "lr": 0.1,
            "clip": 5.0,
            "weight_decay": 0.0,
            "dtype": "float32",
            "seed": 0,
        },  # fmt: skip
        "vocab": vocab,
        "params": params,
        "optimizer": {f"mem.{k}": array(np.zeros(s)) for k, s in shapes.items()},
        "state": {
            "iterations": 0,
            "chars_seen": 0,
            "smooth_loss": 1.0986,
            "last_loss": None,
            "rng": {"bit_generator": "PCG64", "state": str(2**100 + 5), "inc": "7", "has_uint32": 0, "uinteger": 0},
        },  # fmt: skip
    }
    (tmp_path / "hand.msgpack").write_bytes(seal(body))
    model = Model.load(tmp_path / "hand.msgpack")
    assert model.vocab.chars == vocab
    np.testing.assert_array_equal(model.params["0.Whh"], np.frombuffer(params["0.Whh"]["data"], "<f4").reshape(H, H))
    assert set(model.sample(30, seed=0)) <= set(vocab)
    model.train("abab\nbaba\n" * 3)  # and it trains on
    assert model.iterations > 0


def test_growth_keeps_what_was_learned():
    old = "the quick brown fox jumps over the lazy dog. " * 40
    model = Model.new(Config(cell="lstm", hidden=32, seq_length=20, batch_size=4, lr=1e-2), old)
    model.train(old, epochs=10)
    held = "the lazy fox jumps over the quick brown dog. "
    before = model.evaluate(held).bits_per_char
    Wxh, Why = model.params["0.Wxh"].copy(), model.params["Why"].copy()
    assert model.grow("THE QUICK BROWN FOX! 123") == list(" !123BCEFHIKNOQRTUWX".replace(" ", ""))
    after = model.evaluate(held).bits_per_char
    V = len(Wxh[0])
    assert model.params["0.Wxh"].shape == (Wxh.shape[0], V + 19)
    np.testing.assert_array_equal(model.params["0.Wxh"][:, :V], Wxh)
    np.testing.assert_array_equal(model.params["Why"][:V], Why)
    assert before < 2.0  # it did learn the old text
    assert after - before < 0.01  # and growth did not undo it
    model.train("THE QUICK BROWN FOX! 123 " * 20)
    assert all(k == "added_at" or k.split(".", 1)[1] in model.params for k in model.opt_state)


def test_utf8_split_anywhere_and_invalid_bytes_counted():
    text = "façade — 日本語 🐍\n"
    data = text.encode()
    for cut in range(len(data) + 1):
        d = Decoder()
        assert d.decode(data[:cut]) + d.decode(data[cut:], final=True) == text
        assert d.replaced == 0
    bad = b"ok\xff\xfe then \xc3(" + "é".encode()
    assert decode(bad) == ("ok\ufffd\ufffd then \ufffd(é", 3)


def test_prime_with_unknown_characters_is_named():
    model = Model.new(Config(hidden=4), "abc")
    with pytest.raises(ValueError, match="'z'"):
        model.sample(5, prime="abz")


def test_sampling_is_deterministic_and_respects_top_k():
    model = Model.new(Config(cell="gru", hidden=8, seq_length=8, batch_size=2), T1)
    model.train(T1)
    assert model.sample(60, seed=5) == model.sample(60, seed=5)
    assert model.sample(60, seed=5) != model.sample(60, seed=6)
    assert len(set(model.sample(60, seed=5, top_k=1))) <= len(set(model.sample(60, seed=1, temperature=0)))
    assert model.sample(30, temperature=0) == model.sample(30, temperature=0, seed=99)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["params"]["Why"].update(shape=[99, 4]), "params.Why has shape"),
        (lambda d: d["params"]["by"].update(data=b"\0" * 3), "holds 3 bytes"),
        (lambda d: d["params"]["by"].update(dtype="|O"), "dtype"),
        (lambda d: d["params"]["by"].update(data=np.full(3, np.nan, "<f4").tobytes()), "NaN"),
        (lambda d: d["config"].update(cell="transformer"), "cell must be"),
        (lambda d: d.update(vocab=["a", "a", "b"]), "repeated"),
        (lambda d: d["state"].update(iterations=-1), "iterations"),
    ],
)
def test_bad_files_raise_model_format_error(mutate, message):
    model = Model.new(Config(hidden=4), "abc")
    body = open_body(model.to_bytes())
    mutate(body)
    with pytest.raises(ModelFormatError, match=message):
        Model.from_bytes(seal(body))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"version": 8}, "version 8"),
        ({"format": "other"}, "not an rnnpipe model"),
        ({"sha256": b"0" * 32}, "checksum mismatch"),
        ({"extra": 1}, "exactly the keys"),
    ],
)
def test_bad_envelopes_raise_model_format_error(change, message):
    outer = msgpack.unpackb(Model.new(Config(hidden=4), "abc").to_bytes(), raw=False)
    outer.update(change)
    with pytest.raises(ModelFormatError, match=message):
        Model.from_bytes(msgpack.packb(outer, use_bin_type=True))


def test_save_failure_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.msgpack"
    model = Model.new(Config(hidden=4), "abc")
    model.save(path)
    old = path.read_bytes()
    model.train("abcabcabc" * 20)

    def full_disk(*a):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        model.save(path)
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["m.msgpack"]  # no temp file left


@pytest.mark.posix("chmod modes")
def test_save_keeps_the_files_permissions(tmp_path):
    path = tmp_path / "m.msgpack"
    model = Model.new(Config(hidden=4), "abc")
    model.save(path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would make it
    path.chmod(0o640)
    model.save(path)
    assert path.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_one_hot_input_weights_are_drawn_at_embedding_scale(cell):
    # net.INPUT_SCALE: the first layer's Wxh columns are characters'
    # embeddings, uniform(-1, 1); every other weight is uniform(+-1/sqrt(H)),
    # including a second layer's Wxh, which reads hidden states
    H = 64
    model = Model.new(Config(cell=cell, hidden=H, layers=2, dropout=0.1), "".join(map(chr, range(48, 112))))
    first, second = model.params["0.Wxh"], model.params["1.Wxh"]
    assert first.shape[1] == 64 and second.shape[1] == H
    assert np.abs(first).max() <= 1.0 and first.std() == pytest.approx(1 / math.sqrt(3), rel=0.03)
    for name in ("1.Wxh", "0.Whh", "1.Whh", "Why"):
        w = model.params[name]
        assert np.abs(w).max() <= 1 / math.sqrt(H)
        assert w.std() == pytest.approx(1 / math.sqrt(3 * H), rel=0.03)
    # characters met later are drawn at the same scale as the first ones
    model.grow("".join(map(chr, range(0x410, 0x450))))
    new = model.params["0.Wxh"][:, 64:]
    assert new.shape[1] == 64 and new.std() == pytest.approx(1 / math.sqrt(3), rel=0.03)


def test_the_seed_cell_keeps_the_seed_draw():
    model = Model.new(SEED, "".join(map(chr, range(48, 112))))
    assert model.params["0.Wxh"].std() == pytest.approx(0.01, rel=0.05)
    assert model.params["0.Wxh"].shape == (100, 64)


def test_restore_takes_back_every_field_of_the_model():
    # Model.restore copies the fields Model.STATE names: a field added later must be named there too
    model = Model.new(Config(hidden=8), "abc")
    # how it computes, not what it is; and a run's best model while it trains past it, which restore clears
    assert set(vars(model)) == set(Model.STATE) | {"engine", "pool", "kept"}
    before = model.to_bytes()
    model.train("abcabcabc" * 50)
    model.restore(before)
    assert model.to_bytes() == before
