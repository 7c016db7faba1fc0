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


def write_tiny_world(folder: Path, seed: int = 0, n_users: int = 24, n_items: int = 30) -> Path:
    """A RecBole atomic folder ``<folder>/tiny/`` with everything a model family may need, small enough for
    the conformance suite: ``tiny.inter`` (user, item, rating 1-5, time, a context token ``daytime``),
    ``tiny.user`` (``gender`` token, ``age`` float), ``tiny.item`` (``genre`` token, ``tags`` token_seq,
    ``price`` float), a knowledge graph ``tiny.kg`` + ``tiny.link`` (all items but the last 4 linked, 3
    relations, attribute entities shared between items) and a social network ``tiny.net`` (each user
    follows 2-4 others, with a weight)."""
    rng = np.random.default_rng(seed)
    root = Path(folder) / "tiny"
    root.mkdir(parents=True, exist_ok=True)
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float\tdaytime:token"]
    for u in range(n_users):
        items = rng.choice(np.arange(1, n_items + 1), size=int(rng.integers(6, 14)), replace=False)
        for t, i in enumerate(items):
            inter.append(f"u{u}\ti{i}\t{int(rng.integers(1, 6))}\t{t}\t{['morning', 'evening', 'night'][t % 3]}")
    (root / "tiny.inter").write_text("\n".join(inter) + "\n")
    users = ["user_id:token\tgender:token\tage:float"]
    users += [f"u{u}\t{'MF'[u % 2]}\t{18 + (u * 7) % 40}" for u in range(n_users)]
    (root / "tiny.user").write_text("\n".join(users) + "\n")
    items = ["item_id:token\tgenre:token\ttags:token_seq\tprice:float"]
    items += [f"i{i}\tg{i % 4}\t{' '.join(f't{(i + k) % 6}' for k in range(1 + i % 3))}\t{(i % 7) * 1.5:.1f}"
              for i in range(1, n_items + 1)]
    (root / "tiny.item").write_text("\n".join(items) + "\n")
    link = ["item_id:token\tentity_id:token"] + [f"i{i}\te{i}" for i in range(1, n_items - 3)]
    (root / "tiny.link").write_text("\n".join(link) + "\n")
    kg = ["head_id:token\trelation_id:token\ttail_id:token"]
    for i in range(1, n_items - 3):
        kg += [f"e{i}\tgenre\tgenre{i % 4}", f"e{i}\tdirector\tdir{i % 5}"]
        if i % 3 == 0:
            kg.append(f"e{i}\tsequel_of\te{i - 1}")
    (root / "tiny.kg").write_text("\n".join(kg) + "\n")
    net = ["source_id:token\ttarget_id:token\tweight:float"]
    for u in range(n_users):
        for v in rng.choice([x for x in range(n_users) if x != u], size=int(rng.integers(2, 5)), replace=False):
            net.append(f"u{u}\tu{v}\t{rng.uniform(0.5, 1.0):.3f}")
    (root / "tiny.net").write_text("\n".join(net) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """The split (default protocol) of :func:`write_tiny_world`'s dataset."""
    from recstudio.data import from_atomic
    return from_atomic(write_tiny_world(tmp_path_factory.mktemp("tiny-world"))).split()
