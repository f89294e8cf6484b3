"""The demo dataset: prices of 53,940 round-cut diamonds.

Source: the `diamonds` data of ggplot2 (Hadley Wickham), as shipped inside the
plotnine package (`plotnine/data/diamonds.csv`), so nothing is downloaded at run time.
License: ggplot2 and plotnine are MIT-licensed. Its cleansing needs are real: 146
exact duplicate rows, 20 diamonds with a zero length, width or depth, and a few
impossible sizes (y = 58.9 mm, z = 31.8 mm) that are data-entry errors.
"""

from __future__ import annotations

import pandas as pd

from pipeline.stages.datasets import Column, DatasetSpec


def _load() -> pd.DataFrame:
    from plotnine.data import diamonds

    frame = diamonds.copy()
    for name in ("cut", "color", "clarity"):
        frame[name] = frame[name].astype(str)
    return frame


SPEC = DatasetSpec(
    name="diamonds",
    task="regression",
    target=Column(name="price", kind="numeric", min=0, min_exclusive=True, max=100_000,
                  description="price in US dollars"),
    features=(
        Column(name="carat", kind="numeric", min=0, min_exclusive=True, max=10,
               description="weight of the diamond"),
        Column(name="cut", kind="categorical",
               categories=("Fair", "Good", "Very Good", "Premium", "Ideal")),
        Column(name="color", kind="categorical", categories=("D", "E", "F", "G", "H", "I", "J"),
               description="D (best) to J (worst)"),
        Column(name="clarity", kind="categorical",
               categories=("I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF")),
        Column(name="depth", kind="numeric", min=40, max=80,
               description="total depth percentage = 2 * z / (x + y)"),
        Column(name="table", kind="numeric", min=40, max=100,
               description="width of the top relative to the widest point"),
        Column(name="x", kind="numeric", min=0, min_exclusive=True, max=15,
               description="length in mm"),
        Column(name="y", kind="numeric", min=0, min_exclusive=True, max=15,
               description="width in mm"),
        Column(name="z", kind="numeric", min=0, min_exclusive=True, max=15,
               description="depth in mm"),
    ),
    load_builtin=_load,
    source_note="ggplot2 diamonds, shipped in plotnine (MIT)",
)
