"""A RecBole atomic folder by name or path, from the command line, recstudio.run, load_dataset and serve."""
import random
from pathlib import Path

import pytest
import yaml

import recstudio
from recstudio.commands import train
from recstudio.data import from_atomic, load_dataset
from recstudio.data.registry import get_spec
from recstudio.utils.errors import DataError, DatasetNotFoundError


def write_folder(root: Path, name: str = "mydata", sep: str = "\t", bad_rating: bool = False) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    rng = random.Random(0)
    lines = [sep.join(["user_id:token", "item_id:token", "rating:float", "timestamp:float"])]
    for u in range(25):
        for i in rng.sample(range(30), 7):
            lines.append(sep.join([f"u{u}", f"i{i}", str(rng.randint(1, 5)), str(u * 100 + i)]))
    if bad_rating:
        lines[5] = "\t".join(["u0", "i29", "five", "7"])
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = ["item_id:token\tgenre:token_seq"] + [f"i{i}\tg{i % 3} g{i % 5}" for i in range(30)]
    (folder / f"{name}.item").write_text("\n".join(items) + "\n", encoding="utf-8")
    return folder


def run_cli(args, capsys):
    code = train.main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


FAST = ["--epochs", "1", "--embed_dim", "8", "--batch_size", "64", "--quiet", "true"]


def test_a_name_in_data_dir_and_a_folder_path_train_from_the_command_line(tmp_path, monkeypatch, capsys):
    write_folder(tmp_path / "dataset")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["-d", "mydata", "--data_dir", "dataset", "--run_dir", "runs-a", *FAST], capsys)
    assert code == 0, err
    (run,) = (tmp_path / "runs-a").iterdir()
    assert run.name.startswith("BPR-mydata-")
    assert yaml.safe_load((run / "config.yaml").read_text())["dataset"] == "mydata"
    assert any((tmp_path / "dataset" / "custom").glob("mydata-*/*.npz"))   # the same cache as from_atomic
    code, _, err = run_cli(["-d", "dataset/mydata", "--run_dir", "runs-b", "--data_dir", str(tmp_path / "c"),
                            *FAST], capsys)
    assert code == 0, err
    assert [p.name.startswith("BPR-mydata-") for p in (tmp_path / "runs-b").iterdir()] == [True]


def test_load_dataset_of_a_folder_equals_from_atomic_with_the_same_keys(tmp_path):
    folder = write_folder(tmp_path / "dataset")
    by_name = load_dataset("mydata", data_dir=str(tmp_path / "dataset"), min_user_inter=7, rating_threshold=3)
    by_path = load_dataset(str(folder), data_dir=str(tmp_path / "cache"), min_user_inter=7, rating_threshold=3)
    direct = from_atomic(folder, data_dir=str(tmp_path / "cache2"), min_user_inter=7, rating_threshold=3)
    for ds in (by_name, by_path):
        assert ds.name == "mydata"
        assert ds.num_interactions == direct.num_interactions < 25 * 7
        assert ds.num_users == direct.num_users and ds.num_items == direct.num_items
        assert "genre" in ds.item_feat.names
    spec = get_spec(str(folder))
    assert spec.atomic == str(folder.absolute()) and spec.config == {}


def test_run_from_python_with_a_folder_path_and_serve_its_checkpoint(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from recstudio.commands.serve import resolve_checkpoint
    from recstudio.serving import create_app
    folder = write_folder(tmp_path / "data")
    model, metrics = recstudio.run(model="BPR", dataset=str(folder), data_dir=str(tmp_path / "cache"),
                                   run_dir=str(tmp_path / "runs"), epochs=1, embed_dim=8, batch_size=64, quiet=True)
    assert "ndcg@10" in metrics
    served = recstudio.load(resolve_checkpoint(model.run_dir))
    with TestClient(create_app(served)) as client:
        body = client.post("/recommend", json={"users": ["u3"], "k": 3}).json()
        assert body["results"][0]["items"] == served.recommend(["u3"], k=3)[0][0].tolist()
        assert client.get("/health").json()["num_users"] == 25


@pytest.mark.parametrize("kind", ["separator", "rating"])
def test_bad_files_give_the_same_one_line_error_from_cli_and_python(tmp_path, monkeypatch, capsys, kind):
    folder = write_folder(tmp_path / "dataset", sep="," if kind == "separator" else "\t",
                          bad_rating=kind == "rating")
    with pytest.raises(DataError) as python_error:
        from_atomic(folder, data_dir=str(tmp_path / "cache"))
    message = str(python_error.value)
    assert "\n" not in message
    if kind == "separator":
        assert "looks separated by ','" in message
    else:
        assert "line 6" in message and "'five'" in message and "'rating'" in message
    with pytest.raises(DataError) as by_name:
        load_dataset("mydata", data_dir=str(tmp_path / "dataset"))
    assert str(by_name.value) == message
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["-d", "mydata", "--data_dir", "dataset", *FAST], capsys)
    assert code == 2 and err == f"error: {message}\n"


def test_unknown_name_and_no_folder_lists_both_options_and_close_names(tmp_path, capsys):
    write_folder(tmp_path / "dataset")
    with pytest.raises(DatasetNotFoundError) as e:
        get_spec("mydat", data_dir=tmp_path / "dataset")
    text = str(e.value)
    assert "not a registered name" in text and "mydata" in text          # a close folder name
    assert "<data_dir>/<name>/<name>.inter" in text and "list_datasets()" in text
    with pytest.raises(DatasetNotFoundError, match="Did you mean 'ml-1m'"):
        get_spec("ml-1mm", data_dir=tmp_path / "dataset")
    code, _, err = run_cli(["-d", "ml-1mm", "--data_dir", str(tmp_path / "dataset")], capsys)
    assert code == 2 and "Did you mean 'ml-1m'" in err and "atomic folder" in err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.inter").write_text("user_id:token\titem_id:token\n")
    with pytest.raises(DatasetNotFoundError, match=r"holds no other.inter \(it has \['x.inter'\]"):
        get_spec(str(tmp_path / "other"))
