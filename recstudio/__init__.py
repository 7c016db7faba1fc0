"""RecStudio: a modular framework and model zoo for recommender systems in PyTorch.

Example:
    >>> import recstudio
    >>> model, metrics = recstudio.run(model="BPR", dataset="ml-100k")   # doctest: +SKIP
"""
__version__ = "0.1.0"


def run(*args, **kwargs):
    """Train and test a zoo model; see :func:`recstudio.quickstart.run`."""
    from recstudio.quickstart import run as _run
    return _run(*args, **kwargs)


def fit_table(*args, **kwargs):
    """Train a feature (CTR) model on DataFrames through a FeaturePipeline and return it (it keeps the
    pipeline: ``predict_table``, ``save`` / ``load``, ``serve``, ``update``); see
    :func:`recstudio.train.table.fit_table` and ``docs/feature_pipeline.md``."""
    from recstudio.train.table import fit_table as _fit_table
    return _fit_table(*args, **kwargs)


def list_models():
    """Every registered model with its category, base class, dataset type and paper."""
    from recstudio.model.registry import list_models as _list
    return _list()


def get_model(name: str):
    """The model class registered as ``name`` (case-insensitive)."""
    from recstudio.model.registry import get_model as _get
    return _get(name)


def load(path):
    """Rebuild a trained model (class, config, id maps, weights) from a checkpoint file, a file written
    by ``model.save``, or a run directory (its ``best.ckpt``, else ``last.ckpt``); see docs/checkpoints.md.

    Example:
        >>> model = recstudio.load("runs/BPR-ml-100k-20250101-120000-000000")   # doctest: +SKIP
        >>> items, scores = model.recommend(["196"], k=10)                        # doctest: +SKIP
    """
    from recstudio.train.checkpoint import load_model
    return load_model(path)


def compare_runs(paths, metrics=None):
    """Test metrics of several run directories as a DataFrame (rows = runs, columns = metrics);
    see :func:`recstudio.reporting.compare.compare_runs` and ``docs/runs.md``.

    Example:
        >>> recstudio.compare_runs("runs/", metrics=["ndcg@10"])["ndcg@10"].idxmax()   # doctest: +SKIP
        'EASE/ml-100k/EASE-ml-100k-20250101-120000-000000'
    """
    from recstudio.reporting.compare import compare_runs as _compare
    return _compare(paths, metrics=metrics)
