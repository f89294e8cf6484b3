"""Loaders of the built-in data that YAML schemas name (`builtin: module:function`).

A loader returns the raw table as shipped, with readable names and labels: what a
CSV export would hold. It fixes nothing: cleansing does that, against the schema.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def rand_health() -> pd.DataFrame:
    """The RAND Health Insurance Experiment data shipped in statsmodels (20,190 rows).

    One row per person-year. The self-rated health dummies become one label (the
    omitted category is "excellent"); ln(coinsurance + 1) becomes the plan's rate; the
    0/1 physical-limitation flag becomes no/yes, and the values that are neither (the
    source filled gaps with a mean, e.g. 0.144292) are kept as found, for cleansing.
    """
    from statsmodels.datasets import randhie

    raw = randhie.load_pandas().data
    health = np.select([raw["hlthp"] == 1, raw["hlthf"] == 1, raw["hlthg"] == 1],
                       ["poor", "fair", "good"], default="excellent")
    rate = np.round(np.exp(raw["lncoins"]) - 1).astype(int)
    limitation = raw["physlm"].map(lambda v: {0.0: "no", 1.0: "yes"}.get(v, f"{v:.6g}"))
    return pd.DataFrame({
        "visits": raw["mdvis"].astype(float),
        "coinsurance": [f"{r}%" for r in rate],
        "individual_deductible": np.where(raw["idp"] == 1, "yes", "no"),
        "log_incentive": raw["lpi"],
        "log_max_expenditure": raw["fmde"],
        "physical_limitation": limitation,
        "chronic_diseases": raw["disea"],
        "health": health,
    })
