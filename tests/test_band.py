"""The book's one band table (:func:`lmconv.metrics.stats.band`) and the one line-with-band chart that draws it
(:func:`lmconv.figures.plots.band_lines`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmconv.errors import LmconvError
from lmconv.figures import plots
from lmconv.metrics import stats


def long_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [
        {"size": s, "step": t, "seed": k, "v": float(rng.normal())}
        for s in ("b", "a")
        for t in (0, 10, 100)
        for k in range(4)
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("centre", ["mean", "median"])
def test_band_matches_a_brute_force_reduction_per_group(centre):
    df = long_table()
    out = stats.band(df, "v", ["size", "step"], centre=centre)
    assert list(out.columns) == ["size", "step", "value", "lo", "hi", "n"]
    assert list(zip(out["size"], out["step"], strict=True)) == sorted(
        {(s, t) for s, t in zip(df["size"], df.step, strict=True)}
    )
    for r in out.itertuples():
        v = df[(df["size"] == r.size) & (df.step == r.step)].v.to_numpy()
        assert r.value == pytest.approx(np.mean(v) if centre == "mean" else np.median(v))
        assert (r.lo, r.hi, r.n) == (v.min(), v.max(), 4)
        assert r.lo <= r.value <= r.hi


def test_band_sd_is_value_plus_minus_one_sample_sd_and_nan_for_one_unit():
    df = long_table()
    out = stats.band(df, "v", ["size", "step"], spread="sd")
    assert list(out.columns) == ["size", "step", "value", "sd", "lo", "hi", "n"]
    v = df[(df["size"] == "a") & (df.step == 10)].v.to_numpy()
    row = out[(out["size"] == "a") & (out.step == 10)].iloc[0]
    assert row.sd == pytest.approx(v.std(ddof=1))
    assert (row.lo, row.hi) == pytest.approx((v.mean() - v.std(ddof=1), v.mean() + v.std(ddof=1)))
    one = stats.band(df[df.seed == 0], "v", ["size", "step"], spread="sd")
    assert one.sd.isna().all() and (one.n == 1).all()


def test_band_rejects_unknown_statistics_and_columns():
    df = long_table()
    with pytest.raises(LmconvError, match="centre"):
        stats.band(df, "v", ["size"], centre="mode")
    with pytest.raises(LmconvError, match="spread"):
        stats.band(df, "v", ["size"], spread="iqr")
    with pytest.raises(LmconvError, match="no column"):
        stats.band(df, "w", ["size"])


def test_band_lines_draws_the_band_table_on_the_step_axis():
    band = stats.band(long_table(), "v", ["size", "step"])
    chart = plots.band_lines(band, "size", y_title="v", dash=None, width=200)
    spec = chart.to_dict()  # validates against the Vega-Lite schema
    area, line, points = spec["layer"]
    assert area["mark"]["type"] == "area" and area["encoding"]["y"]["field"] == "lo"
    assert area["encoding"]["y2"]["field"] == "hi"
    assert line["encoding"]["y"]["field"] == points["encoding"]["y"]["field"] == "value"
    x = line["encoding"]["x"]
    assert x["scale"]["type"] == "symlog" and x["axis"]["values"][:3] == [0, 1, 10]
    # colours follow the order of appearance unless a domain is given
    assert line["encoding"]["color"]["scale"]["domain"] == ["a", "b"]
    assert line["encoding"]["color"]["scale"]["range"] == plots.PALETTE[:2]
    assert spec["width"] == 200 and spec["height"] == plots.HEIGHT
    no_band = plots.band_lines(band, "size", y_title="v", band=False).to_dict()
    assert [layer["mark"]["type"] for layer in no_band["layer"]] == ["line", "circle"]


def test_panel_width_fits_the_main_column():
    assert plots.panel_width(1) == 300
    assert plots.panel_width(3) * 3 <= plots.CONTENT
    assert plots.panel_width(20) == 150
