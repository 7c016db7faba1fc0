"""Serving trained models over HTTP: ``create_app(model)`` (FastAPI) and ``python -m recstudio serve``.

fastapi and uvicorn are optional (``pip install -e ".[serving]"``); importing this package works
without them, and :func:`create_app` says how to install them. See ``docs/serving.md``.

Example:
    >>> from recstudio.serving import create_app                                    # doctest: +SKIP
    >>> app = create_app(recstudio.load("bpr.pt"))
"""
from recstudio.serving.app import create_app, require_serving
from recstudio.serving.engine import ServingEngine

__all__ = ["create_app", "require_serving", "ServingEngine"]
