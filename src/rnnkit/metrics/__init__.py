"""Evaluation metrics, each computed by the library its field uses (sacrebleu, seqeval, jiwer) or from its
published definition (the forecasting errors of the M competitions). Import from the submodules:
:mod:`rnnkit.metrics.forecast`, :mod:`rnnkit.metrics.sequence`."""
