"""The pages of `rnnpipe show` in a real browser (issue 13): headless
Chromium renders them, a screenshot is not blank, hovering over a character
or moving to it with the keyboard shows its top guesses, right-to-left text
runs right to left, and nothing is loaded from anywhere.

Chromium is driven over its DevTools protocol by tests/chromium.py, with the
standard library only (--remote-debugging-pipe); the screenshot's pixels are
decoded with zlib (chromium.decode_png). Skipped when no chromium is on
PATH; .ci/run installs Debian's `chromium` package, so CI runs it."""

from __future__ import annotations

import json

import pytest
from chromium import Browser, decode_png, find
from cli_util import ROOT, TINY, run
from test_show import TRICKY

from rnnpipe import Model
from rnnpipe.pages.trace import trace

pytestmark = pytest.mark.skipif(
    find() is None, reason="no chromium on PATH (apt-get install chromium); .ci/run installs it"
)

SHAKESPEARE = ROOT / "examples" / "shakespeare.txt"
TEXT = SHAKESPEARE.read_text()[9000:10200] + TRICKY


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    model = folder / "s.msgpack"
    r = run("train", "-m", model, *TINY, "-q", input=SHAKESPEARE.read_text()[:8000] + TRICKY * 3)
    assert r.returncode == 0, r.stderr
    (folder / "in.txt").write_text(TEXT, encoding="utf-8")
    for name, extra in (("surprise", []), ("neuron", ["--neuron", "5"])):
        r = run("show", "-m", model, folder / "in.txt", "-o", folder / f"{name}.html", *extra)
        assert r.returncode == 0, r.stderr
    return folder, Model.load(model)


@pytest.fixture(scope="module")
def browser():
    with Browser(width=900, height=640) as b:
        yield b


def colours(png):
    width, height, rows = decode_png(png)
    pixels = [p for row in rows for p in row]
    return width, height, pixels


def test_the_page_renders_every_character_and_loads_nothing(pages, browser):
    folder, _ = pages
    browser.open(folder / "surprise.html")
    assert browser.evaluate("document.querySelectorAll('.t > span').length") == len(TEXT)
    assert browser.evaluate("document.querySelector('.t').textContent") == TEXT.replace("\r", "\\r")  # drawn
    assert json.loads(browser.evaluate("document.querySelector('script.data').textContent"))["text"] == TEXT
    assert browser.evaluate("performance.getEntriesByType('resource').length") == 0  # no file, font or script fetched
    width, height, pixels = colours(browser.screenshot())
    assert (width, height) == (900, 640)
    distinct = set(pixels)
    assert len(distinct) > 200  # text, legend and colours: not a blank or one-colour page
    white = sum(p == (255, 255, 255) for p in pixels)
    assert white < 0.9 * len(pixels)
    reddish = sum(r > g + 60 and r > b + 60 for r, g, b in pixels)
    assert reddish > 500  # the surprised characters (and the legend) are drawn in the scale's reds


def test_hovering_a_character_shows_its_top_guesses(pages, browser):
    folder, model = pages
    browser.open(folder / "surprise.html")
    tr = trace(model.config, model.vocab, model.params, TEXT)
    i = 40
    assert tr.scored[i]
    x, y = browser.evaluate(
        f"(function () {{ var r = document.querySelectorAll('.t > span')[{i}].getBoundingClientRect();"
        " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
    )
    assert browser.evaluate("document.querySelector('.tip').hidden") is True
    browser.hover(x, y)
    tip = browser.evaluate("document.querySelector('.tip').textContent")
    assert browser.evaluate("document.querySelector('.tip').hidden") is False
    assert browser.evaluate("document.querySelector('.tip').offsetWidth") > 100  # drawn, not just filled in
    assert tip.startswith(json.dumps(TEXT[i]) + "  probability ")
    assert f"{100 * tr.prob[i]:.1f}%" in tip
    assert "the model's top 5 guesses:" in tip
    labels = json.loads(browser.evaluate("document.querySelector('script.data').textContent"))["labels"]
    guesses = tip.split("guesses:\n", 1)[1].splitlines()
    assert [line.split()[1] for line in guesses] == [labels[g].split()[0] for g in tr.top[i]]
    # the picture shows it too: the tooltip's dark box under the character
    _, _, pixels = colours(browser.screenshot())
    assert sum(p == (0x1F, 0x23, 0x30) for p in pixels) > 2000


def test_the_keyboard_reaches_every_character(pages, browser):
    folder, _ = pages
    browser.open(folder / "surprise.html")
    browser.key("Tab", "Tab", 9)
    assert browser.evaluate("Array.prototype.indexOf.call(document.querySelector('.t').children, "
                            "document.activeElement)") == 0  # fmt: skip
    first = browser.evaluate("document.querySelector('.tip').textContent")
    assert "the first character, nothing before it to predict from" in first
    browser.key("ArrowRight", "ArrowRight", 39)
    browser.key("ArrowRight", "ArrowRight", 39)
    assert browser.evaluate("Array.prototype.indexOf.call(document.querySelector('.t').children, "
                            "document.activeElement)") == 2  # fmt: skip
    assert browser.evaluate("document.querySelector('.tip').textContent").startswith(json.dumps(TEXT[2]))
    browser.key("End", "End", 35)
    assert browser.evaluate("document.activeElement.textContent") == TEXT[-1]
    # one tab stop: Tab leaves the text at once
    browser.key("Tab", "Tab", 9)
    assert browser.evaluate("document.querySelector('.t').contains(document.activeElement)") is False


def test_right_to_left_text_and_emoji_render(pages, browser):
    folder, _ = pages
    browser.open(folder / "surprise.html")
    start = TEXT.index("שלום")
    xs = browser.evaluate(
        f"Array.prototype.slice.call(document.querySelectorAll('.t > span'), {start}, {start + 4})"
        ".map(function (s) { return s.getBoundingClientRect().left; })"
    )
    assert xs == sorted(xs, reverse=True) and len(set(xs)) == 4  # each letter left of the one before
    # a newline starts a new line; a tab is wider than a space
    boxes = browser.evaluate(
        "Array.prototype.map.call(document.querySelectorAll('.t > span'), function (s) {"
        " var r = s.getBoundingClientRect(); return [r.top, r.width]; })"
    )
    newline, tab, space = TEXT.index("\n"), TEXT.index("\t"), TEXT.index(" ")
    assert boxes[newline + 1][0] > boxes[newline - 1][0]
    assert boxes[tab][1] > 2 * boxes[space][1]
    emoji = TEXT.index("🙂")
    width = browser.evaluate(f"document.querySelectorAll('.t > span')[{emoji}].getBoundingClientRect().width")
    assert width > 5


def test_the_neuron_page_is_blue_and_red(pages, browser):
    folder, _ = pages
    browser.open(folder / "neuron.html")
    _, _, pixels = colours(browser.screenshot())
    blue = sum(b > r + 40 for r, g, b in pixels)
    red = sum(r > b + 40 and r > g + 40 for r, g, b in pixels)
    assert blue > 300 and red > 300
    x, y = browser.evaluate(
        "(function () { var r = document.querySelectorAll('.t > span')[30].getBoundingClientRect();"
        " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
    )
    browser.hover(x, y)
    assert "unit 5 activation " in browser.evaluate("document.querySelector('.tip').textContent")


def test_control_characters_show_as_escapes_and_the_data_is_the_text(pages, browser, tmp_path):
    # what the browser itself makes of the page: no U+FFFD for a NUL, no € for U+0080
    folder, model = pages
    text = "he\x00llo \x80 w\x85or\x9bld\x1b\r\n"
    (tmp_path / "c.txt").write_bytes(text.encode())
    r = run("show", "-m", folder / "s.msgpack", tmp_path / "c.txt", "-o", tmp_path / "c.html")
    assert r.returncode == 0, r.stderr
    browser.open(tmp_path / "c.html")
    drawn = browser.evaluate("Array.prototype.map.call(document.querySelectorAll('.t > span'), "
                             "function (s) { return s.textContent; })")  # fmt: skip
    assert drawn == [repr(c)[1:-1] if c != "\n" and (ord(c) < 32 or 0x7F <= ord(c) < 0xA0) else c for c in text]
    assert json.loads(browser.evaluate("document.querySelector('script.data').textContent"))["text"] == text
    i = text.index("\x80")
    x, y = browser.evaluate(
        f"(function () {{ var r = document.querySelectorAll('.t > span')[{i}].getBoundingClientRect();"
        " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
    )
    browser.hover(x, y)
    assert browser.evaluate("document.querySelector('.tip').textContent").startswith('"U+0080"')
