"""bench/run.py's table of targets from bench/quality.py's results: the lead
over the best torch figure and "keeps improving" are judged, not copied."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import run  # noqa: E402 (bench/ is not a package)


def point(corpus, label, budget, bits):
    return {"corpus": corpus, "label": label, "budget": budget, "bits": bits}


def test_quality_targets_judge_the_lead_over_the_best_torch_and_the_curve():
    points = [
        point("prose", "rnnpipe default", 60, 2.30),
        point("prose", "rnnpipe default", 180, 2.20),
        point("prose", "rnnpipe default", 600, 2.25),
        point("prose", "torch lstm 256 one-hot", 60, 2.40),
        point("prose", "torch lstm 256 embedding", 60, 2.34),  # the best torch at 60 s: lead 0.04
        point("prose", "torch lstm 256 one-hot", 180, 2.29),  # lead 0.09
        point("code", "rnnpipe default", 60, 1.5),
        point("code", "torch lstm 256 one-hot", 60, 1.6),
    ]
    rows = run.quality_targets(points)
    assert rows[0].startswith("| time to quality, prose, 60 s") and rows[0].endswith("| +0.040 | >= 0.05 | NO |")
    assert rows[1].startswith("| time to quality, prose, 180 s") and rows[1].endswith("| +0.090 | >= 0.08 | yes |")
    # 600 s has no lead target, but the curve went up after 180 s
    assert "(60, 180, 600 s) | 2.300, 2.200, 2.250 | each lower | NO |" in rows[2]
    assert rows[3].endswith("| +0.100 | >= 0.05 | yes |")
    assert len(rows) == 4  # one budget on code: no curve to judge


def test_a_run_with_more_threads_is_still_rnnpipes_default():
    # bench/quality.py --threads 2 labels the default "rnnpipe default, 2 threads"
    import quality

    points = [
        point("prose", "rnnpipe default, 2 threads", 60, 2.20),
        point("prose", "rnnpipe lr=0.02", 60, 2.10),  # another configuration is not the default
        point("prose", "torch lstm 256 one-hot", 60, 2.30),
    ]
    assert quality.leads(points) == [("prose", 60, 2.20, 2.30)]
