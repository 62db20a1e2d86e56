"""Studies over many runs: ``compare`` (a grid of settings x seeds, ranked on validation metrics with a
statistical test between the best two) and ``tune`` (an Optuna search on validation metrics).

This package sits above :mod:`rnnkit.tasks` and below :mod:`rnnkit.cli`: it trains through
:func:`rnnkit.tasks.runner.train` (or, for a tuning trial, the task and the :class:`~rnnkit.training.Trainer`
directly, without a run folder) and reads run folders through :mod:`rnnkit.runfolder`. Neither looks at a test
split to choose anything; see ``docs/experiments.md``.

The entry points are :func:`rnnkit.studies.compare.compare` and :func:`rnnkit.studies.tune.tune` (import them
from their modules, which keep those names; importing this package alone loads no task and no torch). The
statistics on per-seed numbers are re-exported here from :mod:`rnnkit.studies.stats`.
"""

from .stats import bootstrap_ci, compare_two, describe_test, summarize, welch_t

__all__ = ["bootstrap_ci", "compare_two", "describe_test", "summarize", "welch_t"]
