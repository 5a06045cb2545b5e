"""Adam on a grown vocabulary: a character added after training began gets
the updates of a fresh Adam, counted from when it was added, and the model
file (version 2) keeps those counts; version 1 files still load and train."""

import hashlib

import msgpack
import numpy as np
import pytest

from rnnpipe import Config, Model, ModelFormatError, optim
from rnnpipe.cells import net
from rnnpipe.modelfile import VERSION

B1, B2 = optim.ADAM_BETAS
EPS = optim.ADAM_EPS
OLD = "the quick brown fox jumps over the lazy dog. "
NEW = "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG! "


def trained(iterations, **config):
    """An Adam model that has made `iterations` updates on OLD's characters."""
    base = dict(
        cell="gru",
        hidden=8,
        seq_length=10,
        batch_size=2,
        lr=0.01,
        clip=1e9,
        dtype="float64",
        optimizer="adam",
        weight_decay=0.0,
    )  # Adam alone: the arithmetic these tests check
    model = Model.new(Config(**(base | config)), OLD)
    while model.iterations < iterations:
        model.train(OLD * 4, stop=lambda: model.iterations >= iterations)
    assert model.iterations == iterations
    return model


def chunk(model, text, rng, T=10, B=2):
    ids = np.array([model.vocab.index[c] for c in text])
    starts = rng.integers(0, len(ids) - T - 1, B)
    X = np.stack([ids[s : s + T] for s in starts], axis=1)
    Y = np.stack([ids[s + 1 : s + T + 1] for s in starts], axis=1)
    return X, Y


def new_slices(V0, V):
    """The parts of the parameters that belong to the characters V0..V-1."""
    return {"0.Wxh": (slice(None), slice(V0, V)), "Why": (slice(V0, V),), "by": (slice(V0, V),)}


class FreshAdam:
    """Kingma & Ba's Adam from zero moments and its own count from 1, in
    plain numpy: Algorithm 1 (m_hat, v_hat) and the paper's cheaper ordering
    (section 2: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t), p -= lr_t m / (sqrt(v)
    + eps)), which is what rnnpipe has always computed."""

    def __init__(self, shape, lr):
        self.m, self.v, self.t, self.lr = np.zeros(shape), np.zeros(shape), 0, lr

    def update(self, g):
        self.t += 1
        self.m = B1 * self.m + (1 - B1) * g
        self.v = B2 * self.v + (1 - B2) * g * g
        m_hat, v_hat = self.m / (1 - B1**self.t), self.v / (1 - B2**self.t)
        textbook = self.lr * m_hat / (np.sqrt(v_hat) + EPS)
        lr_t = self.lr * np.sqrt(1 - B2**self.t) / (1 - B1**self.t)
        return textbook, lr_t * self.m / (np.sqrt(self.v) + EPS)


def test_a_new_characters_updates_are_a_fresh_adams_and_the_old_rows_are_untouched():
    # long enough that Adam's global bias correction has faded: without the
    # characters' own counts their first update would be ~2.9x a fresh one's
    model = trained(2000)
    V0 = len(model.vocab)
    model.grow(NEW)
    V, T = len(model.vocab), 10
    assert list(model.opt_state["added_at"]) == [0] * V0 + [2000] * (V - V0)
    fresh = {k: FreshAdam(model.params[k][s].shape, model.config.lr) for k, s in new_slices(V0, V).items()}
    rng = np.random.default_rng(0)
    for k in range(1, 6):
        X, Y = chunk(model, NEW * 3, rng)
        _, grads, _ = net.loss(model.params, model.config, X, Y, net.zero_state(model.config, 2))
        before = {n: p.copy() for n, p in model.params.items()}
        t = model.iterations + 1
        assert optim.step(model.config, model.params, {n: g.copy() for n, g in grads.items()}, model.opt_state, t, T)
        model.iterations = t
        sizes = []
        for name, s in new_slices(V0, V).items():
            got = before[name][s] - model.params[name][s]
            # Adam sees the per-character gradient (clip 1e9: never clipped)
            textbook, paper = fresh[name].update(grads[name][s] / T)
            np.testing.assert_allclose(got, paper, rtol=1e-9, atol=1e-15)
            big = np.abs(grads[name][s] / T) > 1e-4  # where eps's placement is immaterial
            np.testing.assert_allclose(got[big], textbook[big], rtol=1e-2)
            sizes.append(np.abs(got[big]) / model.config.lr)
        if k == 1:  # a fresh Adam's first step is lr sign(g), less only where eps matters
            sizes = np.concatenate(sizes)
            assert len(sizes) > 100 and sizes.max() <= 1 + 1e-9 and np.median(sizes) > 0.99
        # the old characters' rows, and everything else, take the plain update at the global count
        step_size = model.config.lr * np.sqrt(1 - B2**t) / (1 - B1**t)
        for name, p in model.params.items():
            old = (slice(None), slice(0, V0)) if name == "0.Wxh" else (slice(0, V0),) if name in ("Why", "by") else ...
            m, v = model.opt_state[f"m.{name}"][old], model.opt_state[f"v.{name}"][old]
            np.testing.assert_array_equal(p[old], before[name][old] - step_size * (m / (np.sqrt(v) + EPS)), name)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_through_train_a_new_characters_first_update_is_at_most_lr(dtype):
    model = trained(2000, dtype=dtype)
    V0 = len(model.vocab)
    model.grow(NEW)
    before = {k: model.params[k][s].copy() for k, s in new_slices(V0, len(model.vocab)).items()}
    model.train(NEW * 4, stop=lambda: True, schedule="none")  # exactly one update, at lr itself
    assert model.iterations == 2001
    steps = np.concatenate(
        [np.abs(before[k] - model.params[k][s]).ravel() for k, s in new_slices(V0, len(model.vocab)).items()]
    )
    lr = model.config.lr
    assert steps.max() <= lr * (1 + 1e-5)  # was about 2.9 lr
    assert np.median(steps[steps > 0]) > 0.9 * lr


def test_growth_before_the_first_update_keeps_the_plain_path():
    model = Model.new(Config(hidden=4, optimizer="adam"), "abc")
    model.grow("xyz")
    assert not model.opt_state["added_at"].any()
    assert optim._vocab_rows(model.params, model.opt_state["added_at"], 1, np.float32) is None
    grown = trained(30)
    grown.grow(NEW)
    assert optim._vocab_rows(grown.params, grown.opt_state["added_at"], 31, np.float64) is not None


def test_a_rollback_past_a_growth_counts_the_new_characters_from_the_next_update(tmp_path):
    # as a divergence guard may do: iterations rewound below a growth's count
    model = trained(20)
    model.grow(NEW)
    model.train(NEW, stop=lambda: model.iterations >= 25)
    assert model.opt_state["added_at"].max() == 20
    model.iterations = 15
    model.save(tmp_path / "m.msgpack")
    back = Model.load(tmp_path / "m.msgpack")
    assert back.opt_state["added_at"].max() == 15  # counted from the next update, and loadable
    model.train(NEW * 2)
    back.train(NEW * 2)
    assert model.opt_state["added_at"].max() == 15
    assert back.to_bytes() == model.to_bytes()


def test_an_empty_vocabulary_grown_late_counts_from_then():
    model = Model.new(Config(hidden=4, optimizer="adam"))
    model.iterations = 7  # as a hand-written file may say
    model.grow("ab")
    assert list(model.opt_state["added_at"]) == [7, 7]


def test_adagrad_keeps_no_counts():
    model = Model.new(Config(hidden=4, optimizer="adagrad"), "abc")
    model.train("abcabc" * 10)
    model.grow("xyz")
    assert "added_at" not in model.opt_state
    assert "added_at" not in body(model.to_bytes())["optimizer"]


# -- the file ---------------------------------------------------------------------------


def body(data):
    return msgpack.unpackb(msgpack.unpackb(data, raw=False)["model"], raw=False)


def seal(doc, version):
    if type(version) is int and version < 4:  # config.weight_decay came in version 4
        doc["config"].pop("weight_decay", None)
    if type(version) is int and version < 5:  # what version 5 added: where the next run's rate starts, and more
        doc["state"].pop("rate", None)  # of where a run stopped
        resume = doc["state"].get("resume")
        for k in ("block", "head", "digest", "interrupted"):
            (resume or {}).pop(k, None)
        ((resume or {}).get("schedule") or {}).pop("start", None)
    if type(version) is int and version < 6:  # what version 6 added: the engine of the latest update
        doc["state"].pop("engine", None)
    if type(version) is int and version < 7:  # what version 7 added: keep-best's score and later model, and
        for k in ("best", "current"):  # why a new model's architecture was chosen
            (doc["state"].get("resume") or {}).pop(k, None)
        doc["state"].pop("chosen", None)
    data = msgpack.packb(doc, use_bin_type=True)
    outer = {"format": "rnnpipe-model", "version": version, "sha256": hashlib.sha256(data).digest(), "model": data}
    return msgpack.packb(outer, use_bin_type=True)


def version_1(model):
    """The model as rnnpipe wrote it before version 2: the same body, with
    the optimizer map holding only the m. and v. (or mem.) arrays."""
    doc = body(model.to_bytes())
    doc["optimizer"] = {k: a for k, a in doc["optimizer"].items() if "." in k}
    del doc["state"]["resume"]  # versions 2 and 3's too
    assert set(doc) == {"config", "vocab", "params", "optimizer", "state"}
    return seal(doc, 1)


def test_the_counts_are_saved_and_resuming_a_grown_model_is_exact(tmp_path):
    model = trained(40)
    model.grow(NEW)
    model.train(NEW, stop=lambda: model.iterations >= 45)
    doc = body(model.to_bytes())
    a = doc["optimizer"]["added_at"]
    assert (a["dtype"], a["shape"]) == ("<i8", [len(model.vocab)])
    assert list(np.frombuffer(a["data"], "<i8")) == list(model.opt_state["added_at"])
    model.save(tmp_path / "m.msgpack")
    back = Model.load(tmp_path / "m.msgpack")
    assert back.to_bytes() == model.to_bytes()
    model.train(NEW * 2)
    back.train(NEW * 2)
    assert back.to_bytes() == model.to_bytes()


@pytest.mark.parametrize("optimizer", ["adam", "adagrad"])
def test_a_version_1_file_loads_and_trains_on_as_it_always_did(optimizer):
    model = trained(0, optimizer=optimizer, dtype="float32")
    model.train(OLD * 6)
    model.grow(NEW)  # grown under version 1: every row counted from the start
    if optimizer == "adam":
        model.opt_state["added_at"][:] = 0  # what a version 1 rnnpipe did
    model.rate = None  # nor did it keep where the next run's rate starts (version 5)
    model.trained_on = None  # nor which engine made the updates (version 6)
    old = Model.from_bytes(version_1(model))
    assert old.to_bytes() == model.to_bytes()  # saved again as the current version, nothing lost
    assert msgpack.unpackb(old.to_bytes(), raw=False)["version"] == VERSION == 7
    if optimizer == "adam":
        assert old.opt_state["added_at"].dtype == np.int64 and not old.opt_state["added_at"].any()
    old.train(NEW * 3)
    model.train(NEW * 3)
    assert old.iterations == model.iterations > 0
    assert old.to_bytes() == model.to_bytes()


def test_a_version_1_file_written_by_hand_from_the_old_doc_loads():
    # version 1 as docs/model-format.md described it, written by hand
    H, vocab = 2, ["a", "b"]
    rng = np.random.default_rng(0)
    shapes = {"0.Wxh": (H, 2), "0.Whh": (H, H), "0.bh": (H,), "Why": (2, H), "by": (2,)}

    def array(a):
        a = np.asarray(a, "<f8")
        return {"dtype": "<f8", "shape": list(a.shape), "data": a.tobytes()}

    config = Model.new(Config(cell="rnn", hidden=H, optimizer="adam", dtype="float64")).config.to_dict()
    doc = {
        "config": config,
        "vocab": vocab,
        "params": {k: array(rng.standard_normal(s) * 0.1) for k, s in shapes.items()},
        "optimizer": {f"{slot}.{k}": array(np.zeros(s)) for slot in ("m", "v") for k, s in shapes.items()},
        "state": {
            "iterations": 12,
            "chars_seen": 0,
            "smooth_loss": 0.69,
            "last_loss": None,
            "rng": {"bit_generator": "PCG64", "state": "5", "inc": "7", "has_uint32": 0, "uinteger": 0},
        },
    }
    model = Model.from_bytes(seal(doc, 1))
    assert list(model.opt_state["added_at"]) == [0, 0] and model.iterations == 12
    model.train("abba" * 20)
    assert model.iterations > 12
    with pytest.raises(ModelFormatError, match="optimizer lacks 'added_at'"):
        Model.from_bytes(seal(doc, 2))  # version 2 must hold the counts


def bad(change):
    model = trained(20)
    model.grow(NEW)
    doc = body(model.to_bytes())
    change(doc)
    return seal(doc, VERSION)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["optimizer"].pop("added_at"), "optimizer lacks 'added_at'"),
        (lambda d: d["optimizer"]["added_at"].update(dtype="<f8"), "optimizer.added_at has dtype '<f8'"),
        (lambda d: d["optimizer"]["added_at"].update(dtype="<i4"), "optimizer.added_at has dtype '<i4'"),
        (lambda d: d["optimizer"]["added_at"].update(shape=[3]), "optimizer.added_at has shape"),
        (lambda d: d["optimizer"]["added_at"].update(data=b"\0" * 8), "optimizer.added_at holds 8 bytes"),
        (lambda d: d["optimizer"]["added_at"].update(data=_counts(d, -1)), "between 0 and state.iterations"),
        (lambda d: d["optimizer"]["added_at"].update(data=_counts(d, 21)), "between 0 and state.iterations"),
        (lambda d: d["optimizer"].update(added_at=[1, 2]), "optimizer.added_at should be dict"),
        (lambda d: d["optimizer"].update(mem=d["optimizer"]["added_at"]), "unexpected entries 'mem'"),
    ],
)
def test_bad_counts_are_refused(change, message):
    with pytest.raises(ModelFormatError, match=message):
        Model.from_bytes(bad(change))


def _counts(doc, value):
    return np.full(len(doc["vocab"]), value, "<i8").tobytes()


def test_a_version_2_body_labelled_version_1_is_refused():
    model = trained(20)
    data = seal(body(model.to_bytes()), 1)
    with pytest.raises(ModelFormatError, match="optimizer has unexpected entries 'added_at'"):
        Model.from_bytes(data)


def test_counts_up_to_the_iterations_are_accepted():
    def change(d):
        d["optimizer"]["added_at"]["data"] = _counts(d, 20)

    assert Model.from_bytes(bad(change)).opt_state["added_at"].max() == 20


@pytest.mark.parametrize("version", [0, 8, -1, 2.0, "2", True, None])
def test_other_versions_are_refused(version):
    data = seal(body(Model.new(Config(hidden=4), "abc").to_bytes()), version)
    with pytest.raises(ModelFormatError, match="reads versions 1, 2, 3, 4, 5, 6 and 7"):
        Model.from_bytes(data)


def interrupted_scheduled_run():
    model = Model.new(Config(hidden=4, seq_length=4, batch_size=2), OLD)
    model.train(OLD * 3, epochs=2, stop=lambda: model.iterations >= 2)
    return model


def test_a_version_2_file_loads_its_position_without_a_schedule():
    """Version 2 is version 3 without state.resume.schedule: such a file's
    interrupted run continues at a constant rate, as version 2 trained it."""
    doc = body(interrupted_scheduled_run().to_bytes())
    del doc["state"]["resume"]["schedule"]
    old = Model.from_bytes(seal(doc, 2))
    assert old.resume is not None and old.resume.schedule is None


def test_a_schedule_in_a_version_2_file_is_refused():
    doc = body(interrupted_scheduled_run().to_bytes())
    assert doc["state"]["resume"]["schedule"]["kind"] == "cosine"
    with pytest.raises(ModelFormatError, match="state.resume should have exactly the keys"):
        Model.from_bytes(seal(doc, 2))


def test_weight_decay_in_versions():
    """Version 4 added config.weight_decay: an older file means none (0), a
    version 4 file must hold it, and an older one may not."""
    model = Model.new(Config(hidden=4, weight_decay=0.1), "abc")
    doc = body(model.to_bytes())
    assert doc["config"]["weight_decay"] == 0.1
    old = Model.from_bytes(seal(body(model.to_bytes()), 3))  # seal drops the field, as version 3 wrote
    assert old.config.weight_decay == 0.0 and old.config.replace(weight_decay=0.1) == model.config
    doc = body(model.to_bytes())
    data = msgpack.packb(doc, use_bin_type=True)
    outer = {"format": "rnnpipe-model", "version": 3, "sha256": hashlib.sha256(data).digest(), "model": data}
    with pytest.raises(ModelFormatError, match="config has weight_decay, which version 3 did not"):
        Model.from_bytes(msgpack.packb(outer, use_bin_type=True))
    del doc["config"]["weight_decay"]
    with pytest.raises(ModelFormatError, match="config lacks weight_decay"):
        Model.from_bytes(seal(doc, 4))
