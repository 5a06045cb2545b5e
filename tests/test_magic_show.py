"""%charrnn_show and the new sampling options of %charrnn_sample (issue 13),
in a real InteractiveShell, as tests/test_magic.py runs the other magics."""

from __future__ import annotations

import json

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from test_magic import TEXT, TINY, get_ipython, train
from test_show import Page

from rnnpipe import Model
from rnnpipe.pages import show


@pytest.fixture
def ip():
    shell = get_ipython()
    shell.run_line_magic("load_ext", "rnnpipe_magic")
    # a terminal shell computes only text/plain; a notebook's kernel computes HTML too
    types = shell.display_formatter.active_types
    shell.display_formatter.active_types = [*types, "text/html"]
    yield shell
    shell.display_formatter.active_types = types
    with capture_output():
        shell.run_line_magic("unload_ext", "rnnpipe_magic")


def model_of(ip, name):
    return ip.find_cell_magic("charrnn_train").__self__.models["name", name].model


def html_outputs(cap):
    return [o.data["text/html"] for o in cap.outputs if "text/html" in o.data]


# -- %charrnn_show ------------------------------------------------------------------


def test_cell_magic_shows_the_cells_text_inline(ip):
    train(ip, f"--name sh {TINY}")
    body = 'He said "a <b> & c"\n\tשלום 🙂\n'
    with capture_output() as cap:
        ip.run_cell(f"%%charrnn_show --name sh\n{body}").raise_error()
    (page,) = html_outputs(cap)
    parsed = Page(page)
    # IPython hands the cell magic its body with the final newline; it is shown as written
    assert parsed.text == body and len(parsed.spans) == len(body)
    assert not page.startswith("<!DOCTYPE")  # a fragment in the notebook, not a document
    assert page.startswith('<div class="rnnpipe-show" id="rnnpipe-show-')
    assert "sh: GRU, 1 layer(s) of 8 units" in page


def test_line_magic_with_text_variable_and_neuron(ip, tmp_path):
    train(ip, f"-m {tmp_path / 'k.msgpack'} {TINY}")
    ip.user_ns["passage"] = TEXT[:300]
    with capture_output() as cap:
        ip.run_line_magic("charrnn_show", f"-m {tmp_path / 'k.msgpack'} --text passage --neuron 2")
    (page,) = html_outputs(cap)
    data = json.loads(Page(page).data)
    assert Page(page).text == TEXT[:300] and data["neuron"] and data["unit"] == 2
    assert "unit 2 of layer 0" in page
    # the same page, in the notebook's markup, as the command line's (bar the ids)
    model = Model.load(tmp_path / "k.msgpack")
    from rnnpipe.pages.trace import trace

    tr = trace(model.config, model.vocab, model.params, TEXT[:300], layers=[0])
    assert Page(page).colours() == [show.activation_colour(float(a)) for a in tr.units[0][:, 2]]


def test_two_pages_in_one_notebook_have_their_own_ids(ip):
    train(ip, f"--name two {TINY}")
    with capture_output() as cap:
        ip.run_cell("%%charrnn_show --name two\nabc").raise_error()
        ip.run_cell("%%charrnn_show --name two\nabc").raise_error()
    first, second = html_outputs(cap)
    ids = [p.split('id="', 1)[1].split('"', 1)[0] for p in (first, second)]
    assert ids[0] != ids[1] and ids[0] in first.split("<script>")[-1]


@pytest.mark.parametrize(
    "line, body, expected",
    [
        ("--name e --neuron 8", "abc", "--neuron 8 is out of range: the model has 8 units per layer, 0 to 7"),
        ("--name e --neuron 0 --layer 2", "abc", "--layer 2 is out of range"),
        ("--name e", None, "%charrnn_show needs --text VAR"),
        ("--name e --text nowhere", None, "--text: no variable 'nowhere'"),
        ("--name nobody", "abc", "no model named 'nobody'"),
    ],
)
def test_show_usage_errors_are_one_line(ip, line, body, expected):
    train(ip, f"--name e {TINY}")
    with pytest.raises(UsageError) as e:
        if body is None:
            ip.run_line_magic("charrnn_show", line)
        else:
            ip.run_cell_magic("charrnn_show", line, body)
    assert str(e.value).startswith(expected) and "\n" not in str(e.value)


def test_show_help_lists_its_options(ip):
    text = ip.object_inspect_text("%charrnn_show")
    for option in ("--neuron K", "--layer L", "--text VAR", "-m MODEL", "--name NAME"):
        assert option in text


# -- %charrnn_sample's new options ---------------------------------------------------


def test_sample_lines_until_beam_and_prime_file(ip, tmp_path):
    train(ip, f"--name sm {TINY} --epochs 3")
    model = model_of(ip, "sm")
    with capture_output() as cap:
        ip.run_cell("%charrnn_sample --name sm -n 3000 --seed 4 --prime 'One ' --lines 2 -o out").raise_error()
    out = ip.user_ns["out"]
    assert out.startswith("One ") and out[4:].count("\n") == 2 and out.endswith("\n")
    assert out == model.sample(3000, prime="One ", seed=4, lines=2)
    assert cap.stdout == out + "\n"

    with capture_output():
        ip.run_cell("%charrnn_sample --name sm -n 3000 --seed 4 --prime 'One ' --until 'e ' -o out").raise_error()
    out = ip.user_ns["out"]
    assert out.endswith("e ") and out[4:].count("e ") == 1

    with capture_output():
        ip.run_cell("%charrnn_sample --name sm -n 50 --beam 1 --prime 'One ' -o beam").raise_error()
        ip.run_cell("%charrnn_sample --name sm -n 50 --temperature 0 --prime 'One ' -o greedy").raise_error()
    assert ip.user_ns["beam"] == ip.user_ns["greedy"] and len(ip.user_ns["beam"]) == 54

    prime = "One morning,\nwhen "
    (tmp_path / "p.txt").write_text(prime, encoding="utf-8")
    with capture_output():
        ip.run_cell(f"%charrnn_sample --name sm -n 20 --seed 1 --prime-file {tmp_path / 'p.txt'} -o pf").raise_error()
    assert ip.user_ns["pf"] == model.sample(20, prime=prime, seed=1)


@pytest.mark.parametrize(
    "line, expected",
    [
        ("--prime-file -", "--prime-file -: a notebook has no stdin"),
        ("--prime-file /nonexistent/p.txt", "--prime-file /nonexistent/p.txt: no such file"),
        ("--prime x --prime-file p.txt", "give --prime or --prime-file, not both"),
        ("--beam 0", "--beam must be at least 1"),
        ("--beam 2 --temperature 0.5", "--beam searches for the likeliest text"),
        ("--lines 0", "--lines must be at least 1"),
    ],
)
def test_sample_option_errors_are_one_line(ip, line, expected):
    train(ip, f"--name er {TINY}")
    with pytest.raises(UsageError) as e:
        ip.run_line_magic("charrnn_sample", f"--name er {line}")
    assert str(e.value).startswith(expected) and "\n" not in str(e.value)


def test_invalid_utf8_prime_file_is_one_line(ip, tmp_path):
    train(ip, f"--name u8 {TINY}")
    (tmp_path / "bad.txt").write_bytes(b"One\xff")
    with pytest.raises(UsageError, match=r"not UTF-8 text \(byte 0xff at offset 3\)$"):
        ip.run_line_magic("charrnn_sample", f"--name u8 --prime-file {tmp_path / 'bad.txt'}")


def test_a_long_text_is_cut_with_a_note(ip):
    train(ip, f"--name long {TINY}")
    ip.user_ns["long_text"] = (TEXT * 100)[: show.MAX_CHARS + 7]
    with capture_output() as cap:
        ip.run_line_magic("charrnn_show", "--name long --text long_text")
    (page,) = html_outputs(cap)
    assert Page(page).text == ip.user_ns["long_text"][: show.MAX_CHARS]
    note = f"The text is longer than {show.MAX_CHARS:,} characters: this page shows its first {show.MAX_CHARS:,}."
    assert cap.stderr == note + "\n" and note in page
