"""``rnnkit serve``: an HTTP API and a web page over a finished run folder (the ``serve`` extra).

:func:`rnnkit.serve.app.create_app` builds the FastAPI app (``/predict``, ``/generate``, ``/health``,
``/info``, ``/openapi.json`` and the page at ``/``); :mod:`rnnkit.serve.batcher` runs every model call on one
thread, takes predictions and generations in turn and merges concurrent predictions; :mod:`rnnkit.serve.limits`
refuses oversize and stalled bodies and foreign Host headers; :mod:`rnnkit.serve.protocol` bounds the wait
for request headers and the number of open connections.
This package imports FastAPI only in those modules, so ``import rnnkit.serve`` works without the extra.
"""

#: what ``pip install`` needs for ``rnnkit serve``
INSTALL_HINT = "pip install 'rnnkit[serve]'"


def missing_extra() -> str | None:
    """The first missing package of the ``serve`` extra, or None when all are installed."""
    import importlib.util

    for name in ("fastapi", "uvicorn"):
        if importlib.util.find_spec(name) is None:
            return name
    return None
