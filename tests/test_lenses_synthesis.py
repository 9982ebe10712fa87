"""Chapter 9's synthesis on synthetic events with known alignments."""

import numpy as np
import pandas as pd
import pytest

from lmconv.lenses import synthesis as syn


def events() -> pd.DataFrame:
    rows = []
    for size, shift in (("small", 1.0), ("large", 2.0)):
        for u in range(3):
            jitter = 1 + 0.05 * u
            rows += [
                (size, f"pair {u}", "kl_uniform_end", 10 * jitter),
                (size, f"pair {u}", "kl_peak", 1000 * shift * jitter),
                (size, f"seed {u}", "cka_attention", 1000 * shift * jitter),
                (size, f"seed {u}", "cka_mlp", 1100 * shift * jitter),
                (size, f"seed {u}", "sosd_point", 1000 * shift * jitter),
                (size, f"seed {u}", "loss_elbow", 100 * jitter),
            ]
        rows.append((size, "pair 9", "kl_trough", None))  # a pair that shows no trough
    return pd.DataFrame(rows, columns=["size", "unit", "event", "step"])


def test_summary_counts_units_and_medians():
    s = syn.summarise(events(), ["small", "large"])
    peak = s[(s["size"] == "small") & (s.event == "kl_peak")].iloc[0]
    assert peak["median"] == pytest.approx(1050) and peak["seen"] == 3 and peak["units"] == 3
    trough = s[(s["size"] == "small") & (s.event == "kl_trough")].iloc[0]
    assert trough["seen"] == 0 and trough["units"] == 1 and np.isnan(trough["median"])


def test_gaps_and_alignment():
    s = syn.summarise(events(), ["small", "large"])
    g = syn.gaps(s)
    row = g[(g["size"] == "small") & (g.a == "sosd_point") & (g.b == "loss_elbow")].iloc[0]
    assert row.gap_decades == pytest.approx(-1.0)  # the elbow is a decade before t_S
    pairs = syn.aligned_pairs(g, tol=0.1).set_index(["a", "b"])
    assert pairs.loc[("kl_peak", "sosd_point"), "sizes_aligned"] == 2
    assert pairs.loc[("sosd_point", "loss_elbow"), "sizes_aligned"] == 0
    assert pairs.loc[("kl_uniform_end", "kl_peak"), "gap_trend"] == pytest.approx(np.log10(2))


def test_statements_follow_the_numbers():
    s = syn.summarise(events(), ["small", "large"])
    say = syn.statements(s, syn.gaps(s), tol=0.1)
    assert "does not join them" in say["elbow"] and "1.00 to 1.30 decades" in say["elbow"]
    assert "close together" in say["late"] and "left out" not in say["late"]
    unseen = events()
    unseen.loc[unseen.event == "sosd_point", "step"] = None  # t_S found in no run
    s3 = syn.summarise(unseen, ["small", "large"])
    late = syn.statements(s3, syn.gaps(s3), tol=0.1)["late"]
    assert late.endswith("(the SoSD point was not seen in any run, so it is left out)")
    shifted = events()
    elbow = shifted.event == "loss_elbow"
    shifted.loc[elbow, "step"] *= np.where(shifted.loc[elbow, "size"] == "small", 10, 20)  # now it meets t_S
    s2 = syn.summarise(shifted, ["small", "large"])
    assert syn.statements(s2, syn.gaps(s2), tol=0.1)["elbow"].startswith("lines up")
    order = syn.lead_event(s)
    labels = dict(zip(s.event, s.label, strict=True))
    assert order["small"].iloc[0].startswith(labels["kl_uniform_end"] + " (")
    assert order["small"].iloc[1].startswith(labels["loss_elbow"] + " (")
    assert list(order.index[:2]) == [1, 2]


def test_decay_statement_checks_the_schedule_at_each_late_event():
    from lmconv.training import profiles

    summary = pd.DataFrame(
        {"size": ["a", "a", "a"], "event": ["kl_peak", "sosd_point", "kl_trough"], "median": [900.0, 1200.0, 50.0]}
    )
    cosine = profiles.Schedule(kind="cosine", warmup=100, final_ratio=0.1)
    lr = syn.lr_at_events(summary, cosine, 2000)
    assert list(lr.event) == ["kl_peak", "sosd_point"] and lr.decaying.all()  # the trough is not a late event
    assert syn.decay_statement(lr).startswith("All 2 late events")
    constant = profiles.Schedule(kind="constant", warmup=100, final_ratio=1.0)
    assert syn.decay_statement(syn.lr_at_events(summary, constant, 2000)).startswith("None of the 2")
    assert "cannot be said" in syn.decay_statement(syn.lr_at_events(summary.iloc[2:], cosine, 2000))
