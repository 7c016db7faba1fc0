"""Shared fixtures. Every test gets its own data dir: nothing touches ~/.cache."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
ML100K = ROOT / "datasets" / "ml-100k"
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path_factory, monkeypatch):
    path = tmp_path_factory.mktemp("recstudio-data")
    monkeypatch.setenv("RECSTUDIO_DATA_DIR", str(path))
    return path


@pytest.fixture
def tiny_frame():
    """20 users x 15 items with ratings and timestamps, a few duplicates."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(20):
        items = rng.choice(15, size=int(rng.integers(3, 10)), replace=False)
        for k, i in enumerate(items):
            rows.append((f"u{u}", f"i{i}", float(rng.integers(1, 6)), 1000 * u + 10 * k))
    df = pd.DataFrame(rows, columns=["user", "item", "rating", "ts"])
    return df


@pytest.fixture(scope="session")
def ml100k_frame():
    return pd.read_csv(ML100K / "u.data", sep="\t", names=["user_id", "item_id", "rating", "timestamp"])


def random_interaction_split(seed: int, n_users: int, n_items: int, length, **split_kwargs):
    """A small implicit-feedback split: user ``u{k}`` has ``length`` distinct random items ``i{j}``
    (``length``: an int, or ``(low, high)`` drawn per user), timestamps in order, rating 1."""
    from recstudio.data import from_dataframe
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        size = length if isinstance(length, int) else int(rng.integers(*length))
        rows += [(f"u{u}", f"i{i}", 1.0, float(t)) for t, i in enumerate(rng.choice(n_items, size=size, replace=False))]
    frame = pd.DataFrame(rows, columns=["u", "i", "r", "t"])
    return from_dataframe(frame, "u", "i", "r", "t").split(**split_kwargs)


@pytest.fixture(scope="session")
def make_split():
    """Factory fixture of :func:`random_interaction_split`."""
    return random_interaction_split
