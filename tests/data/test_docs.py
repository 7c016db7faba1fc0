from pathlib import Path

from recstudio.data.config import DATA_OPTIONS

ROOT = Path(__file__).resolve().parents[2]


def test_every_data_key_is_documented():
    text = (ROOT / "docs" / "data.md").read_text()
    missing = [k for k in DATA_OPTIONS if f"`{k}`" not in text]
    assert not missing, f"docs/data.md lacks {missing}"
