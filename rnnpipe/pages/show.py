"""The pages of `rnnpipe show` and %charrnn_show: a text, one element per
character, coloured by what the model made of it (trace.py).

A page is one self-contained HTML file: its CSS and JS are inline and it
loads nothing, so it opens from disk, from a mail, offline. The same markup,
without <html> around it, is what the notebook shows (fragment()); every CSS
rule is scoped under the page's root class so nothing leaks into the
notebook around it, and the script finds its own root by a unique id, so
two pages in one notebook do not mix.

Each character is a <span> holding exactly that character (escaped), so the
text reassembles from the elements, except a control character, which HTML
cannot always give back (it has no NUL, and reads a reference to U+0080 to
U+009F as Windows-1252's € to Ÿ): its span holds a visible escape, \x00 or
\r as `rnnpipe info` writes them, with class "x". The text exactly, control
characters and all, is the JSON block's "text"; the data the tooltip shows
(probability, top guesses, activation) sits in that block too, which the
script reads, rather than in attributes on every span, which would repeat
the vocabulary's labels thousands of times.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import unicodedata

import numpy as np

MAX_CHARS = 20_000  # characters a page shows at most: beyond that a browser crawls and the picture says no more
SCALE_BITS = 8.0  # surprise at and above which the colour is the darkest (a chance of 1 in 256)
NOT_SCORED = "#e2e2e2"  # background of characters without a prediction (unknown, or the first)

# Surprise, from 0 bits to SCALE_BITS: white through yellow and orange to dark
# red. Every channel falls along the ramp, so darker always means more surprised.
SURPRISE_STOPS = ["#ffffff", "#fff3b0", "#fdba74", "#f05a3a", "#8b0a1a"]
# An activation from -1 to +1: blue through white to red.
ACTIVATION_STOPS = ["#2c5fbf", "#ffffff", "#c8283a"]

NAMES = {"\n": "\u21b5 newline", "\t": "\u21e5 tab", " ": "\u2423 space", "\r": "carriage return"}


def _rgb(hex_colour):
    return [int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]


def _ramp(stops, t):
    """The colour at t in [0, 1] along evenly spaced stops, linearly in sRGB."""
    t = min(max(t, 0.0), 1.0) * (len(stops) - 1)
    i = min(int(t), len(stops) - 2)
    a, b = _rgb(stops[i]), _rgb(stops[i + 1])
    f = t - i
    return "#" + "".join(f"{round(x + (y - x) * f):02x}" for x, y in zip(a, b, strict=True))


def surprise_colour(bits):
    return _ramp(SURPRISE_STOPS, bits / SCALE_BITS)


def activation_colour(a):
    return _ramp(ACTIVATION_STOPS, (a + 1) / 2)


def luminance(hex_colour):
    """Relative luminance (WCAG) of a colour: 0 black to 1 white."""

    def lin(v):
        v /= 255
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(v) for v in _rgb(hex_colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def label(c):
    """A character as the tooltip names it: whitespace and invisible
    characters by name, the rest as themselves."""
    if c in NAMES:
        return NAMES[c]
    if not c.isprintable():
        name = unicodedata.name(c, "")
        return f"U+{ord(c):04X}" + (f" {name.lower()}" if name else "")
    return c


def escaped(c):
    """Whether the page draws c as an escape: a control character other than
    a newline or a tab (HTML holds no NUL, remaps references to U+0080 to
    U+009F, and turns a carriage return into a newline; none shows)."""
    return c not in "\n\t" and unicodedata.category(c) == "Cc"


def escape(c):
    """A control character as the page draws it: \x00, \x80, \r, as Python
    and `rnnpipe info` write it."""
    return repr(c)[1:-1]


def _char_html(c):
    """A character as HTML text that a parser gives back exactly: <, >, &
    and quotes escaped, the line and paragraph separators as numeric
    references; a control character as its escape (escaped())."""
    if c in "\n\t":
        return c
    if escaped(c):
        return html.escape(escape(c))
    if c in "\u2028\u2029":
        return f"&#{ord(c)};"
    return html.escape(c, quote=True)


# raw in the page, these would reach a terminal that `rnnpipe show` writes to (and a NUL cannot be in it)
_UNSAFE = "<>&\u2028\u2029\x7f" + "".join(map(chr, range(0x80, 0xA0)))


def _json_for_script(data):
    """JSON that cannot end the <script> it sits in, whatever the text holds,
    and holds no control character raw (json escapes those below U+0020)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for c in _UNSAFE:
        text = text.replace(c, f"\\u{ord(c):04x}")
    return text


def _round(x):
    return None if x is None or not math.isfinite(x) else float(f"{x:.4g}")


def _per_char(trace, vocab, layer, unit):
    """The script's data for each character: [kind, char, probability,
    guesses, their probabilities, activation]; kind 0 predicted, 1 the first
    known character (nothing before it), 2 unknown to the model. char is a
    vocabulary index, or the label itself for an unknown character."""
    rows = []
    acts = trace.units[layer][:, unit] if unit is not None else None
    index = vocab.index
    for t, c in enumerate(trace.text):
        kind = 0 if trace.scored[t] else (2 if not trace.known[t] else 1)
        guesses = [int(g) for g in trace.top[t] if g >= 0]
        rows.append(
            [
                kind,
                index[c] if kind != 2 else label(c),
                _round(trace.prob[t]),
                guesses,
                [_round(p) for p in trace.top_prob[t][: len(guesses)]],
                None if acts is None or kind == 2 else _round(float(acts[t])),
            ]
        )
    return rows


def _colour(trace, t, acts):
    """Background of character t, and whether it is dark enough for white text."""
    if acts is not None:
        if not trace.known[t]:
            return NOT_SCORED, False
        colour = activation_colour(float(acts[t]))
    elif trace.scored[t]:
        colour = surprise_colour(float(trace.bits[t]))
    else:
        return NOT_SCORED, False
    return colour, luminance(colour) < 0.25


def _spans(trace, acts):
    out = []
    for t, c in enumerate(trace.text):
        colour, dark = _colour(trace, t, acts)
        classes = ["u"] if not trace.known[t] else []
        if c == "\n":
            classes.append("nl")  # the newline is drawn as an arrow (CSS ::before), so its colour shows
        elif escaped(c):
            classes.append("x")  # drawn as its escape; the exact character is the data's "text"
        if dark:
            classes.append("d")
        cls = f' class="{" ".join(classes)}"' if classes else ""
        tab = ' tabindex="0"' if t == 0 else ""  # one tab stop; the arrow keys move from it (see SCRIPT)
        out.append(f'<span{cls} style="background:{colour}"{tab}>{_char_html(c)}</span>')
    return "".join(out)


def _legend(neuron):
    if neuron:
        stops = ", ".join(ACTIVATION_STOPS)
        ticks = ["\u22121", "0", "+1"]
        caption = "activation"
    else:
        stops = ", ".join(SURPRISE_STOPS)
        ticks = [f"{b:g}" for b in np.linspace(0, SCALE_BITS, 5)]
        ticks[-1] += "+"
        caption = "surprise in bits (\u2212log\u2082 of the probability the model gave the character)"
    tick_html = "".join(f"<span>{t}</span>" for t in ticks)
    grey = "unknown to the model (skipped)" if neuron else "not predicted: the first character, or unknown (skipped)"
    return (
        f'<div class="legend"><div class="bar" style="background:linear-gradient(to right, {stops})"></div>'
        f'<div class="ticks">{tick_html}</div><div class="cap">{html.escape(caption)}</div><div class="cap">'
        f'<span class="sw" style="background:{NOT_SCORED}"></span> {html.escape(grey)}</div></div>'
    )


def fragment(trace, vocab, *, model_label, layer=None, unit=None, note=None, uid=None):
    """The page's markup without <html> around it: what the notebook shows.

    unit (with layer) colours by that unit's activation, else by surprise.
    model_label is one line describing the model; note, if any, is shown
    under the header (that the text was cut, say)."""
    neuron = unit is not None
    if uid is None:  # the same text and model give the same page, byte for byte
        uid = hashlib.sha256(f"{trace.text}\0{model_label}\0{layer}\0{unit}".encode("utf-8", "surrogatepass"))
        uid = uid.hexdigest()[:12]
    root = f"rnnpipe-show-{uid}"
    acts = trace.units[layer][:, unit] if neuron else None
    bpc = trace.bits_per_char
    scored = (
        f"{bpc:.3f} bits/char over {trace.chars:,} characters predicted"
        if trace.chars
        else "no character predicted (it takes two the model knows)"
    )
    unknown = f"; {trace.unknown:,} unknown to the model, grey and skipped" if trace.unknown else ""
    title = f"unit {unit} of layer {layer}" if neuron else "surprise"
    what = (
        f"Each character coloured by the activation of unit {unit} of layer {layer} after reading it, "
        "blue (\u22121) through white (0) to red (+1)."
        if neuron
        else "Each character coloured by how surprised the model was to see it."
    )
    data = {
        "text": trace.text,  # exactly what was read, control characters and all
        "labels": [label(c) for c in vocab.chars],
        "chars": _per_char(trace, vocab, layer if neuron else None, unit),
        "neuron": neuron,
        "unit": unit,
    }
    parts = [
        f'<div class="rnnpipe-show" id="{root}">',
        f"<style>{CSS.replace('ROOT', '#' + root)}</style>",
        f"<header><h1>rnnpipe: {html.escape(title)}</h1>",
        f'<p class="model">{html.escape(model_label)}</p>',
        f'<p class="stats">{len(trace.text):,} characters; {html.escape(scored + unknown)}.</p>',
        f"<p>{html.escape(what)} Hover over a character, or Tab to the text and move with the arrow keys, "
        "to see its probability and the model's top five guesses for it.</p>",
    ]
    if note:
        parts.append(f'<p class="note">{html.escape(note)}</p>')
    parts += [
        "</header>",
        _legend(neuron),
        f'<div class="t" role="group" aria-label="the text, one element per character">{_spans(trace, acts)}</div>',
        '<div class="tip" role="tooltip" aria-live="polite" hidden></div>',  # read out as the focus moves
        f'<script type="application/json" class="data">{_json_for_script(data)}</script>',
        f"<script>{SCRIPT.replace('ROOT_ID', root)}</script>",
        "</div>",
    ]
    return "".join(parts)


def page(trace, vocab, *, model_label, layer=None, unit=None, note=None, uid=None):
    """A whole HTML document, self-contained: see fragment()."""
    title = f"unit {unit} of layer {layer}" if unit is not None else "surprise"
    body = fragment(trace, vocab, model_label=model_label, layer=layer, unit=unit, note=note, uid=uid)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>rnnpipe show: {html.escape(title)}</title></head>\n<body>{body}</body></html>\n"
    )


# Scoped under the root's id (ROOT is replaced), so that in a notebook these
# rules touch nothing else. white-space: pre-wrap keeps newlines, tabs and
# runs of spaces as they are and still wraps long lines; each paragraph takes
# its direction from its own text (unicode-bidi: plaintext), so a line of
# Arabic or Hebrew reads right to left.
CSS = """
ROOT { font: 15px/1.45 system-ui, sans-serif; color: #1d1d1f; background: #fff; padding: 12px 16px;
  position: relative; max-width: 1100px; }
ROOT h1 { font-size: 18px; margin: 0 0 4px; }
ROOT header p { margin: 2px 0; }
ROOT .model, ROOT .stats { color: #444; }
ROOT .note { color: #8a4b00; }
ROOT .legend { margin: 10px 0 12px; max-width: 520px; font-size: 12px; color: #444; }
ROOT .bar { height: 12px; border: 1px solid #bbb; border-radius: 2px; }
ROOT .ticks { display: flex; justify-content: space-between; }
ROOT .sw { display: inline-block; width: 12px; height: 12px; border: 1px solid #bbb; vertical-align: -2px;
  margin-right: 4px; }
ROOT .t { white-space: pre-wrap; unicode-bidi: plaintext; overflow-wrap: anywhere;
  font: 15px/1.6 ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
ROOT .t span { border-radius: 2px; cursor: default; }
ROOT .t span.x { color: #555; font-size: 80%; box-shadow: inset 0 0 0 1px #999; }
ROOT .t span.d { color: #fff; }
ROOT .t span.u { outline: 1px dashed #999; outline-offset: -1px; }
ROOT .t span.nl::before { content: "\\21b5"; color: #9a9a9a; }
ROOT .t span.d.nl::before { color: #eee; }
ROOT .t span:focus, ROOT .t span.on { outline: 2px solid #1a56db; outline-offset: 0; }
ROOT .tip { position: absolute; z-index: 10; background: #1f2330; color: #fff; padding: 6px 9px;
  border-radius: 5px; font: 13px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; white-space: pre;
  pointer-events: none; box-shadow: 0 2px 8px rgba(0,0,0,.3); }
ROOT .tip[hidden] { display: none; }
"""

# Builds the tooltip from the JSON block with textContent only (never
# innerHTML), so no character of the text or the vocabulary can become
# markup. The text has one tab stop (its first character); the arrow keys,
# Home and End move the focus from character to character, as in any
# composite widget, so Tab still leaves the text in one press.
SCRIPT = r"""
(function () {
  var root = document.getElementById("ROOT_ID");
  var data = JSON.parse(root.querySelector("script.data").textContent);
  var text = root.querySelector(".t"), tip = root.querySelector(".tip");
  var spans = text.children, on = null;
  function pct(p) { return p === null ? "?" : (100 * p).toFixed(p >= 0.001 ? 1 : 3) + "%"; }
  function describe(i) {
    var d = data.chars[i], lines = [];
    var name = d[0] === 2 ? d[1] : data.labels[d[1]];
    if (d[0] === 2) {
      lines.push(JSON.stringify(name) + ": not in the model's vocabulary,");
      lines.push("skipped (neither predicted nor context)");
      return lines.join("\n");
    }
    if (d[0] === 1) lines.push(JSON.stringify(name) + ": the first character, nothing before it to predict from");
    else lines.push(JSON.stringify(name) + "  probability " + pct(d[2]) + ", surprise " +
                    (-Math.log2(d[2])).toFixed(2) + " bits");
    if (data.neuron) lines.push("unit " + data.unit + " activation " + (d[5] >= 0 ? "+" : "") + d[5].toFixed(3));
    if (d[3].length) {
      lines.push("the model's top " + d[3].length + " guesses:");
      for (var k = 0; k < d[3].length; k++) {
        var mark = d[3][k] === d[1] ? "  \u2190" : "";
        lines.push("  " + pct(d[4][k]).padStart(6) + "  " + data.labels[d[3][k]] + mark);
      }
    }
    return lines.join("\n");
  }
  function show(span) {
    var i = Array.prototype.indexOf.call(spans, span);
    if (i < 0) return;
    if (on) on.classList.remove("on");
    on = span; span.classList.add("on");
    tip.textContent = describe(i);
    tip.hidden = false;
    var r = span.getBoundingClientRect(), box = root.getBoundingClientRect();
    var left = r.left - box.left, top = r.bottom - box.top + 4;
    tip.style.left = Math.max(0, Math.min(left, box.width - tip.offsetWidth)) + "px";
    tip.style.top = top + "px";
  }
  function hide() { tip.hidden = true; if (on) { on.classList.remove("on"); on = null; } }
  text.addEventListener("mouseover", function (e) { if (e.target.parentNode === text) show(e.target); });
  text.addEventListener("mouseleave", function () { if (!text.contains(document.activeElement)) hide(); });
  text.addEventListener("focusin", function (e) { show(e.target); });
  text.addEventListener("focusout", function (e) { if (!text.contains(e.relatedTarget)) hide(); });
  text.addEventListener("keydown", function (e) {
    var i = Array.prototype.indexOf.call(spans, document.activeElement), j = i;
    if (e.key === "ArrowRight" || e.key === "ArrowDown") j = i + 1;
    else if (e.key === "ArrowLeft" || e.key === "ArrowUp") j = i - 1;
    else if (e.key === "Home") j = 0;
    else if (e.key === "End") j = spans.length - 1;
    else if (e.key === "Escape") { hide(); return; }
    else return;
    e.preventDefault();
    j = Math.max(0, Math.min(j, spans.length - 1));
    if (j === i || i < 0) return;
    spans[i].tabIndex = -1; spans[j].tabIndex = 0; spans[j].focus();
  });
})();
"""


def model_label(model, name):
    """One line about the model for a page's header: its file (or name), shape and training."""
    c = model.config
    cell = {"rnn": "vanilla RNN", "lstm": "LSTM", "gru": "GRU"}[c.cell]
    return (
        f"{name}: {cell}, {c.layers} layer(s) of {c.hidden} units, {len(model.vocab)} characters in its "
        f"vocabulary, {model.iterations:,} training iterations"
    )
