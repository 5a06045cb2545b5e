"""How the benchmarks judge their figures (tests/measures.py, which bench/
imports): bench/run.py's table of targets from bench/quality.py's results,
where the lead over the best torch figure and "keeps improving" are judged,
not copied; and bench/anomaly.py's ranking measures."""

import measures


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
    rows = measures.quality_targets(points)
    assert rows[0].startswith("| time to quality, prose, 60 s") and rows[0].endswith("| +0.040 | >= 0.05 | NO |")
    assert rows[1].startswith("| time to quality, prose, 180 s") and rows[1].endswith("| +0.090 | >= 0.08 | yes |")
    # 600 s has no lead target, but the curve went up after 180 s
    assert "(60, 180, 600 s) | 2.300, 2.200, 2.250 | each lower | NO |" in rows[2]
    assert rows[3].endswith("| +0.100 | >= 0.05 | yes |")
    assert len(rows) == 4  # one budget on code: no curve to judge


def test_the_lead_over_the_gpt_peer_is_judged_where_the_issue_sets_one():
    points = [
        point("prose", "rnnpipe default", 60, 2.30),
        point("prose", "rnnpipe default", 180, 2.15),
        point("prose", measures.GPT_LABEL, 60, 2.60),  # no target at 60 s
        point("prose", measures.GPT_LABEL, 180, 2.38),  # lead 0.23 < 0.25
        point("code", "rnnpipe default", 180, 1.45),
        point("code", measures.GPT_LABEL, 180, 1.90),  # no target on code
        point("prose", "torch lstm 256 one-hot", 180, 2.10),  # torch's better figure is not the GPT's
    ]
    assert measures.gpt_leads(points) == [("prose", 60, 2.30, 2.60), ("prose", 180, 2.15, 2.38),
                                          ("code", 180, 1.45, 1.90)]  # fmt: skip
    rows = [r for r in measures.quality_targets(points) if "GPT" in r]
    assert len(rows) == 1 and rows[0].startswith("| time to quality, prose, 180 s")
    assert rows[0].endswith("| +0.230 | >= 0.25 | NO |")


def test_a_run_with_more_threads_is_still_rnnpipes_default():
    # bench/quality.py --threads 2 labels the default "rnnpipe default, 2 threads"
    points = [
        point("prose", "rnnpipe default, 2 threads", 60, 2.20),
        point("prose", "rnnpipe lr=0.02", 60, 2.10),  # another configuration is not the default
        point("prose", "torch lstm 256 one-hot", 60, 2.30),
    ]
    assert measures.leads(points) == [("prose", 60, 2.20, 2.30)]


def test_the_benchmarks_measures_count_ties_half_and_give_gzip_its_window():
    assert measures.roc_auc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0
    assert measures.roc_auc([1, 1, 1, 1], [0, 1, 0, 1]) == 0.5  # all tied: chance
    assert measures.roc_auc([4, 3, 2, 1], [0, 0, 1, 1]) == 0.0
    assert measures.precision_at([5, 4, 3, 2], [1, 0, 1, 0], 2) == 0.5
    line = "2026-05-20 16:49:14 status installed libmagic1:amd64 1:5.44-3\n"
    # a line the dictionary holds compresses to a few bytes; without it, it costs most of its length
    with_context, alone = measures.gzip_scores(line * 3, [line])[0], measures.gzip_scores("", [line])[0]
    assert with_context < 0.2 < alone
    trace = measures.stack_trace()
    assert trace[0].startswith("Traceback") and trace[-1].startswith("json.decoder.JSONDecodeError")
