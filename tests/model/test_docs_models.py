from pathlib import Path

from recstudio.model.registry import list_models

ROOT = Path(__file__).resolve().parents[2]


def test_every_registered_model_is_in_the_model_list():
    text = (ROOT / "docs" / "models.md").read_text()
    missing = [m["name"] for m in list_models() if f"| {m['name']} " not in text]
    assert not missing, f"docs/models.md lacks {missing}"
