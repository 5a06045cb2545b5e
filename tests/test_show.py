"""`rnnpipe show` and `rnnpipe neurons` (issue 13): the pages parse into one
element per character that give the text back exactly, escaping and Unicode
are right, colours follow surprise and activation, the numbers are eval's,
and a unit built to track quotes is the one `neurons` finds. Driven through
the real executable and real pipes, as tests/test_cli.py does; the page in
a real browser is tests/test_show_browser.py."""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from cli_util import ROOT, TINY, one_error_line, run, shell

from rnnpipe import Config, Model, cli
from rnnpipe.pages import features, show
from rnnpipe.pages.trace import trace

SHAKESPEARE = ROOT / "examples" / "shakespeare.txt"
TRICKY = "a <b> & \"c\" 'd'\tx\n\nשלום עולם 123\nمرحبا\n🙂 ok 👍🏽\r\n</script><!-- done -->\n"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A tiny model trained on a few kB of Shakespeare, and the text it knows."""
    path = tmp_path_factory.mktemp("show") / "s.msgpack"
    text = SHAKESPEARE.read_text()[:8000]
    # the tricky characters are in its vocabulary too, so they get predictions
    r = run("train", "-m", path, *TINY, "-q", input=text + TRICKY * 3)
    assert r.returncode == 0, r.stderr
    return path


class Page(HTMLParser):
    """What a page holds: the characters' spans in the text element, their
    backgrounds, and the JSON data block."""

    def __init__(self, html):
        super().__init__(convert_charrefs=True)
        self.depth = None  # nesting inside the text element
        self.spans, self.current = [], None
        self.data = self.in_data = None
        self.scripts = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if self.depth is not None:
            self.depth += 1
            assert tag == "span" and self.depth == 1, "only spans, one per character, in the text"
            self.current = {"text": "", "class": a.get("class", ""), "style": a.get("style", "")}
        elif tag == "div" and a.get("class") == "t":
            self.depth = 0
        elif tag == "script":
            self.scripts.append(a)
            self.in_data = "data" in (a.get("class") or "")
        for name in ("src", "href"):  # nothing is loaded from anywhere
            assert name not in a, (tag, a)

    def handle_endtag(self, tag):
        if self.depth is not None:
            if self.depth == 0:
                self.depth = None
            else:
                self.spans.append(self.current)
                self.depth -= 1
        if tag == "script":
            self.in_data = False

    def handle_data(self, data):
        if self.depth:
            self.current["text"] += data
        elif self.depth == 0:
            assert data == "", f"text outside a character's span: {data!r}"
        if self.in_data:
            self.data = (self.data or "") + data

    @property
    def text(self):
        return "".join(s["text"] for s in self.spans)

    def colours(self):
        return [re.fullmatch(r"background:(#[0-9a-f]{6})", s["style"]).group(1) for s in self.spans]


def show_page(model, text, *args):
    r = run("show", "-m", model, *args, input=text)
    assert r.returncode == 0, r.stderr
    return Page(r.stdout.decode("utf-8")), r


# -- the page ----------------------------------------------------------------------


def test_one_element_per_character_and_the_text_comes_back_exactly(small):
    page, r = show_page(small, TRICKY)
    assert r.stderr == b""
    assert len(page.spans) == len(TRICKY)
    assert all(len(s["text"]) == 1 or s["text"] == "\\r" for s in page.spans)
    # tabs, newlines, RTL, emoji and markup, character for character; the \r drawn as its escape
    assert page.text == TRICKY.replace("\r", "\\r")
    assert json.loads(page.data)["text"] == TRICKY  # and the data holds the text exactly
    html = r.stdout.decode()
    for c, escaped in (("<", "&lt;"), (">", "&gt;"), ("&", "&amp;"), ('"', "&quot;"), ("\r", "\\r")):
        assert html.count(f">{escaped}</span>") == TRICKY.count(c), c
    assert "><</span>" not in html and ">&</span>" not in html and "<b>" not in html
    assert "</script><!--" not in html
    assert html.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in html
    # the data block cannot end its <script> early, whatever the text holds
    data = json.loads(page.data)
    assert len(data["chars"]) == len(TRICKY)
    assert "<" not in page.data and "&" not in page.data
    assert [s.get("src") for s in page.scripts] == [None, None]  # inline: nothing from the network
    assert "http" not in html.replace("http://www.w3.org", "")  # no link to fetch anything


CONTROLS = "a\x00b\x01c\x1bd\x7fe\x80f\x85g\x9bh\x9fi\rj\x0ck\n"


def test_control_characters_show_as_their_escapes_and_the_data_holds_them_exactly(small):
    # issue 21: NUL showed as U+FFFD and U+0080-U+009F through HTML's remapping (the tooltip said U+0080, the
    # page showed €): now each is drawn as the escape `info` writes, with its exact code point, and the data
    # block holds the text exactly
    page, r = show_page(small, CONTROLS)
    assert len(page.spans) == len(CONTROLS)
    drawn = [s["text"] for s in page.spans]
    assert drawn == [repr(c)[1:-1] if c not in "\n" and ord(c) in (*range(0x20), *range(0x7F, 0xA0)) else c
                     for c in CONTROLS]  # fmt: skip
    assert drawn[1:4:2] == ["\\x00", "\\x01"] and drawn[9] == "\\x80" and drawn[17] == "\\r"
    assert ["x" in s["class"].split() for s in page.spans] == [len(d) > 1 for d in drawn]
    data = json.loads(page.data)
    assert data["text"] == CONTROLS
    assert "\ufffd" not in page.text and "€" not in page.text
    raw = r.stdout
    # nothing raw that a terminal reading `rnnpipe show`'s output would act on, nor a reference HTML remaps
    assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]", raw)
    assert not re.search(rb"&#(0|1[2-5]\d);", raw)


def test_the_header_gives_evals_bits_per_char_and_the_model(small):
    text = SHAKESPEARE.read_text()[9000:11000]
    page, r = show_page(small, text)
    html = r.stdout.decode()
    want = Model.load(small).evaluate(text)
    shown = float(re.search(r"([0-9.]+) bits/char over ([0-9,]+) characters predicted", html).group(1))
    assert shown == pytest.approx(want.bits_per_char, abs=6e-4)
    assert f"over {want.chars:,} characters predicted" in html
    assert "s.msgpack: GRU, 1 layer(s) of 16 units" in html


def test_colours_rise_with_surprise(small):
    levels = [surprise for surprise in np.linspace(0, 12, 200)]
    lum = [show.luminance(show.surprise_colour(b)) for b in levels]
    assert all(a >= b for a, b in zip(lum, lum[1:], strict=False))  # never lighter when more surprised
    assert lum[0] == 1.0 and lum[-1] < 0.1 and lum[50] > lum[100] > lum[150]
    # and on a page: the characters' backgrounds darken as their surprise grows
    text = SHAKESPEARE.read_text()[9000:10000]
    page, _ = show_page(small, text)
    tr = trace(*_core(small), text)
    scored = np.flatnonzero(tr.scored)
    lums = np.array([show.luminance(c) for c in page.colours()])[scored]
    order = np.argsort(tr.bits[scored], kind="stable")
    assert np.all(np.diff(lums[order]) <= 1e-12)
    assert lums.max() - lums.min() > 0.3  # the text is not one colour


def _core(path):
    m = Model.load(path)
    return m.config, m.vocab, m.params


def test_unknown_characters_are_grey_and_skipped(small):
    text = "To be Ω or not€ to be"
    page, _ = show_page(small, text)
    colours = page.colours()
    for i, c in enumerate(text):
        if c in "Ω€":
            assert colours[i] == show.NOT_SCORED and "u" in page.spans[i]["class"].split()
    assert colours[0] == show.NOT_SCORED  # the first character has nothing to be predicted from
    data = json.loads(page.data)["chars"]
    assert data[text.index("Ω")][0] == 2 and data[text.index("Ω")][1] == "Ω"
    # skipped means as if not there: the rest is predicted as in the text without them
    without = trace(*_core(small), text.replace("Ω", "").replace("€", ""))
    with_ = trace(*_core(small), text)
    assert with_.bits[with_.known] == pytest.approx(without.bits, nan_ok=True)


def test_tooltips_data_are_the_models_top_five_guesses(small):
    text = "ROMEO: what say"
    page, _ = show_page(small, text)
    data = json.loads(page.data)
    model = Model.load(small)
    tr = trace(model.config, model.vocab, model.params, text)
    kind, char, p, guesses, probs, act = data["chars"][7]
    assert kind == 0 and data["labels"][char] == "w" and act is None
    assert p == pytest.approx(tr.prob[7], rel=1e-3)
    assert len(guesses) == 5 and guesses == list(tr.top[7])
    assert probs == sorted(probs, reverse=True)
    assert data["labels"][model.vocab.index["\n"]] == "\u21b5 newline"
    assert data["labels"][model.vocab.index[" "]] == "\u2423 space"


def test_stdout_into_head_is_quiet_and_o_writes_a_file(small, tmp_path):
    text = SHAKESPEARE.read_text()[:5000]
    (tmp_path / "in.txt").write_text(text)
    r = shell(f"set -o pipefail; rnnpipe show -m '{small}' '{tmp_path / 'in.txt'}' | head -c 100", timeout=60)
    assert r.returncode == 0 and r.stderr == b"" and len(r.stdout) == 100
    out = tmp_path / "page.html"
    r = run("show", "-m", small, tmp_path / "in.txt", "-o", out)
    assert r.returncode == 0 and r.stdout == b""
    bpc = re.search(r"([0-9.]+) bits/char", out.read_text()).group(1)
    assert r.stderr.decode() == f"rnnpipe: wrote {out}: 5,000 characters, {bpc} bits/char\n"
    assert Page(out.read_text()).text == text


def test_long_text_is_cut_at_the_documented_size_with_a_note(small):
    text = (SHAKESPEARE.read_text() * 2)[: show.MAX_CHARS + 500]
    page, r = show_page(small, text)
    assert page.text == text[: show.MAX_CHARS]
    note = f"longer than {show.MAX_CHARS:,} characters: this page shows its first {show.MAX_CHARS:,}"
    assert note in r.stdout.decode()
    assert r.stderr.decode() == f"rnnpipe: note: the text is {note}.\n"
    assert f"first {show.MAX_CHARS:,}" in _help("show")
    # reading stops at the cut, so an endless pipe makes a page too
    r = shell(f"set -o pipefail; yes 'To be or not' | rnnpipe show -m '{small}' | tail -c 8", timeout=60)
    assert r.returncode == 141 or r.returncode == 0  # yes itself ends by SIGPIPE when show stops reading
    assert r.stdout == b"</html>\n"


def test_the_neuron_page_colours_by_the_units_activation(small):
    text = SHAKESPEARE.read_text()[:1500]
    page, _ = show_page(small, text, "--neuron", "3")
    tr = trace(*_core(small), text, layers=[0])
    acts = tr.units[0][:, 3]
    assert [show.activation_colour(float(a)) for a in acts] == page.colours()
    assert show.activation_colour(-1) == "#2c5fbf" and show.activation_colour(0) == "#ffffff"
    assert show.activation_colour(1) == "#c8283a"
    data = json.loads(page.data)
    assert data["neuron"] and data["unit"] == 3
    assert [d[5] for d in data["chars"]] == pytest.approx([float(f"{a:.4g}") for a in acts])
    html = run("show", "-m", small, "--neuron", "3", input=text).stdout.decode()
    assert "unit 3 of layer 0" in html


def test_unit_activations_are_the_cells_state():
    # LSTM: tanh of the cell state; GRU and RNN: the hidden state (after each character)
    for cell in ("lstm", "gru", "rnn"):
        model = Model.new(Config(cell=cell, hidden=6, layers=2, dtype="float64"), text="abc d")
        text = "abc dab cd"
        tr = trace(model.config, model.vocab, model.params, text, layers=[0, 1])
        from rnnpipe.cells import net

        state = net.zero_state(model.config, 1)
        for t, c in enumerate(text):
            _, state, _ = net.forward(model.params, model.config, np.array([[model.vocab.index[c]]]), state)
            for layer in (0, 1):
                want = np.tanh(state[layer][1][0]) if cell == "lstm" else state[layer][0][0]
                assert tr.units[layer][t] == pytest.approx(want, abs=1e-6), (cell, layer, t)


# -- errors: one line ------------------------------------------------------------


def test_bad_input_is_one_line(small, tmp_path):
    assert "--neuron 16 is out of range: the model has 16 units per layer, 0 to 15" in one_error_line(
        run("show", "-m", small, "--neuron", "16", input="abc"), 2
    )
    assert "--layer 1 is out of range: the model has 1 layer(s), 0 to 0" in one_error_line(
        run("show", "-m", small, "--neuron", "0", "--layer", "1", input="abc"), 2
    )
    assert "empty input: nothing to show" in one_error_line(run("show", "-m", small, input=""), 1)
    corrupt = tmp_path / "corrupt.msgpack"
    corrupt.write_bytes(b"\x93not a model")
    for command in ("show", "neurons"):
        assert str(corrupt) in one_error_line(run(command, "-m", corrupt, input="abc"), 1)
    assert "no such model" in one_error_line(run("show", "-m", tmp_path / "none.msgpack", input="abc"), 1)
    assert "nofile.txt" in one_error_line(run("show", "-m", small, tmp_path / "nofile.txt"), 1)
    line = one_error_line(run("show", "-m", small, "-o", tmp_path / "no" / "page.html", input="abc"), 1)
    assert "page.html: cannot write the page: No such file or directory" in line
    assert "--top must be at least 1" in one_error_line(run("neurons", "-m", small, "--top", "0", input="ab"), 2)
    # invalid UTF-8 is replaced and said, as eval does: one warning line, and the page
    r = run("show", "-m", small, input=b"To be \xff or not")
    assert r.returncode == 0
    assert r.stderr == b"rnnpipe: warning: 1 invalid UTF-8 byte(s) in the input were replaced by U+FFFD\n"
    assert Page(r.stdout.decode()).text == "To be \ufffd or not"


# -- neurons -----------------------------------------------------------------------


def quote_model(path=None, H=6):
    """An LSTM whose unit 0 is built, weight by weight, to hold +1 in its cell
    between a pair of double quotes and -1 (or 0 before the first) outside:
    at a quote its forget gate closes and its input gate opens, and its
    candidate is the sign opposite to its own output; at any other character
    it keeps its cell as it is. The other units are random."""
    alphabet = 'abcdefgh ."\n'
    model = Model.new(Config(cell="lstm", hidden=H, dtype="float64", seed=3), text=alphabet)
    p = model.params
    q = model.vocab.index['"']
    i, f, o, g = (k * H for k in range(4))  # unit 0's row in each gate
    for row in (i, f, o, g):
        p["0.Wxh"][row] = 0
        p["0.Whh"][row] = 0
    p["0.bh"][i], p["0.Wxh"][i, q] = -12, 24  # input gate: open at a quote only
    p["0.bh"][f], p["0.Wxh"][f, q] = 12, -24  # forget gate: closed at a quote only
    p["0.bh"][o] = 12  # output gate: always open, so h = tanh(c)
    p["0.bh"][g], p["0.Wxh"][g, q], p["0.Whh"][g, 0] = 0, 6, -20  # candidate: +1 from outside, -1 from inside
    p["0.Whh"][:, 0] *= np.array([1 if r in (i, f, o, g) else 0 for r in range(4 * H)])  # unit 0 moves no one else
    if path is not None:
        model.save(path)
    return model


def quoted_text(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    words = ["abc", "dead", "bag", "fade", "cafe", "egg", "had"]
    out, inside = [], False
    while sum(map(len, out)) < n:
        out.append(str(rng.choice(words)))
        r = rng.random()
        out.append('"' if r < 0.15 else "." if r < 0.2 else "\n" if r < 0.25 else " ")
        inside ^= out[-1] == '"'
    return "".join(out)


def test_a_unit_built_to_track_quotes_ranks_first(tmp_path):
    path = tmp_path / "q.msgpack"
    model = quote_model(path)
    text = quoted_text()
    tr = trace(model.config, model.vocab, model.params, text, layers=[0])
    inside = features.features(text)["quote"]
    assert np.all((tr.units[0][:, 0] > 0.7) == (inside == 1))  # it does track them
    r = run("neurons", "-m", path, "--top", "2", input=text)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[0].split() == ["unit", "layer", "feature", "correlation", "meaning"]
    quote_rows = [line.split() for line in lines[1:] if line.split()[2] == "quote"]
    assert len(quote_rows) == 2
    assert quote_rows[0][:2] == ["0", "0"] and float(quote_rows[0][3]) > 0.95
    assert abs(float(quote_rows[1][3])) < float(quote_rows[0][3])
    assert len(lines) == 1 + 2 * 4  # --top 2 for each of the four features the text varies (no brackets)
    assert r.stderr.decode() == (
        "rnnpipe: feature bracket left out: inside parentheses, brackets or braces does not vary in this text\n"
    )


def test_neurons_html_writes_each_listed_units_page(tmp_path):
    path = tmp_path / "q.msgpack"
    quote_model(path)
    text = quoted_text(600)
    out = tmp_path / "pages"
    r = run("neurons", "-m", path, "--top", "1", "--html", out, input=text)
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in out.iterdir())
    assert "quote-layer0-unit0.html" in names and len(names) == 4
    assert r.stderr.decode().endswith(f"rnnpipe: wrote 4 page(s) into {out}\n")
    page = Page((out / "quote-layer0-unit0.html").read_text())
    assert page.text == text and json.loads(page.data)["unit"] == 0
    assert "unit 0 of layer 0" in (out / "quote-layer0-unit0.html").read_text()


def test_features_of_a_text():
    f = features.features('ab "cd (e)"\nf')
    assert list(f["quote"]) == [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    assert list(f["bracket"]) == [0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0]
    assert list(f["column"]) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1]
    assert list(f["word-start"]) == [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert list(f["newline"]) == [0] * 11 + [1, 0]
    assert list(features.features("\u201cab\u201d c")["quote"]) == [1, 1, 1, 0, 0, 0]


def _help(command):
    import io

    out = io.StringIO()
    assert cli.main([command, "--help"], stdout=out) == 0
    return out.getvalue()


def test_one_stream_whatever_the_chunking():
    # trace reads the text in chunks; the result is that of one step per character
    model = Model.new(Config(cell="gru", hidden=8, dtype="float64"), text="abcdefgh \n")
    text = ("abc defg\nhab " * 60)[:700]
    tr = trace(model.config, model.vocab, model.params, text)
    from rnnpipe.cells import net

    state, logp = net.zero_state(model.config, 1), None
    total = 0.0
    for t, c in enumerate(text):
        ix = model.vocab.index[c]
        if logp is not None:
            total -= logp[ix]
            assert tr.bits[t] == pytest.approx(-logp[ix] / math.log(2), rel=1e-9)
        hs, state, _ = net.forward(model.params, model.config, np.array([[ix]]), state)
        logp = net.log_softmax(net.logits(model.params, hs))[0]
    assert tr.bits_per_char == pytest.approx(total / (len(text) - 1) / math.log(2), rel=1e-9)


def test_neurons_lists_three_per_feature_by_default_and_cuts_long_text(small):
    text = ('He said "so (they say) it is" and went.\n' + SHAKESPEARE.read_text() * 2)[: features.MAX_CHARS + 10]
    r = run("neurons", "-m", small, input=text, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.decode().splitlines()[1:]]
    named = [row[2] for row in rows]
    assert {name: named.count(name) for name in set(named)} == {name: 3 for name in features.FEATURES}
    assert r.stderr.decode() == (
        f"rnnpipe: note: the text is longer than {features.MAX_CHARS:,} characters: ranking on its first "
        f"{features.MAX_CHARS:,}\n"
    )
