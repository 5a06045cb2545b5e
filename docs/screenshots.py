"""Make the README's pictures of `rnnpipe show`: docs/show-surprise.png and
docs/show-neuron.png.

    python docs/screenshots.py [--model kafka.msgpack] [--seconds 120]

Trains an LSTM on the bundled examples/kafka.txt for --seconds (unless the
model file exists already), asks `rnnpipe neurons` for the unit it ranks
highest (or the best one for --feature), renders the surprise page and that unit's page of
a passage of the story in headless Chromium (driven by tests/chromium.py,
standard library only), hovers over a character so the tooltip shows, and
saves the screenshots. Needs chromium on PATH.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from chromium import Browser  # noqa: E402  (tests/chromium.py, found through the path above)

RNNPIPE = [sys.executable, "-m", "rnnpipe"]
START = '"Oh, God", he thought, "what a strenuous career'  # a passage with quotes, early in the story
LENGTH = 1100


def rnnpipe(*args, **kwargs):
    return subprocess.run([*RNNPIPE, *map(str, args)], check=True, cwd=ROOT, **kwargs)


def top_unit(model, feature, text_file):
    """(feature, layer, unit, correlation) of the unit `rnnpipe neurons` ranks
    first for the feature, or with feature "any" the strongest of all."""
    out = rnnpipe("neurons", "-m", model, "--top", "1", text_file, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines()[1:]:
        unit, layer, name, r = line.split()[:4]
        if feature in (name, "any"):
            rows.append((name, int(layer), int(unit), float(r)))
    if not rows:
        raise SystemExit(f"rnnpipe neurons ranked no unit for {feature}")
    return max(rows, key=lambda row: abs(row[3]))


def shoot(browser, page, png, hover_index):
    browser.open(page)
    x, y = browser.evaluate(
        f"(function () {{ var r = document.querySelectorAll('.t > span')[{hover_index}].getBoundingClientRect();"
        " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
    )
    browser.hover(x, y)
    png.write_bytes(browser.screenshot())
    print(f"wrote {png.relative_to(ROOT)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "kafka-lstm.msgpack"), help="model file (trained if missing)")
    parser.add_argument("--seconds", type=float, default=120, help="training time for a new model")
    parser.add_argument(
        "--feature", default="any", help="the feature whose best unit to picture (default: the best-tracked one)"
    )
    args = parser.parse_args()
    kafka = ROOT / "examples" / "kafka.txt"
    model = Path(args.model)
    if not model.exists():
        rnnpipe("train", "-m", model, "--cell", "lstm", "--hidden", "128", "--max-time", args.seconds, kafka)
    story = kafka.read_text(encoding="utf-8")
    passage = story[story.index(START) :][:LENGTH]
    feature, layer, unit, r = top_unit(model, args.feature, kafka)
    print(f"unit {unit} of layer {layer}: correlation {r:+.3f} with {feature}")
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp) / "passage.txt"
        text.write_text(passage, encoding="utf-8")
        surprise, neuron = Path(tmp) / "surprise.html", Path(tmp) / "neuron.html"
        rnnpipe("show", "-m", model, text, "-o", surprise)
        rnnpipe("show", "-m", model, "--neuron", unit, "--layer", layer, text, "-o", neuron)
        with Browser(width=1000, height=620) as browser:
            # hover over a character the reader can check: inside "career", and a word's first letter
            shoot(browser, surprise, ROOT / "docs" / "show-surprise.png", passage.index("career") + 2)
            shoot(browser, neuron, ROOT / "docs" / "show-neuron.png", passage.index("strenuous"))


if __name__ == "__main__":
    main()
