"""The framework around the models: config layering, entry points, optimisation, determinism."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import recstudio
from recstudio.model.base.config import resolve_config
from recstudio.model.registry import get_model, list_models
from recstudio.utils.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def split(make_split):
    return make_split(1, n_users=30, n_items=40, length=10)


def small(**kw):
    return {"embed_dim": 8, "epochs": 3, "batch_size": 64, "quiet": True, **kw}


def test_registry_lists_models_with_metadata():
    models = {m["name"]: m for m in list_models()}
    assert {"BPR", "NCF", "MF"} <= set(models)
    assert models["BPR"]["base"] == "TwoTower" and models["BPR"]["dataset_type"] == "triplet"
    assert models["NCF"]["base"] == "TowerFree" and "WWW 2017" in models["NCF"]["paper"]
    assert get_model("bpr") is get_model("BPR") and get_model("NeuMF") is get_model("NCF")
    with pytest.raises(ConfigError, match="unknown model 'BRP'.*Did you mean 'BPR'"):
        get_model("BRP")


def test_config_layers_in_priority_order(tmp_path):
    cls = get_model("BPR")
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("train:\n  learning_rate: 0.01\nmodel:\n  embed_dim: 16\nmin_user_inter: 3\n")
    cfg = resolve_config(cls, {"min_user_inter": 2, "seed": 5}, cfg_file, {"embed_dim": 32})
    assert cfg["min_user_inter"] == 3          # file beats the dataset YAML
    assert cfg["seed"] == 5                    # dataset YAML beats global defaults
    assert cfg["learning_rate"] == 0.01        # file beats the model YAML (0.001)
    assert cfg["embed_dim"] == 32              # keyword beats the file
    assert cfg["batch_size"] == 2048           # the model YAML beats global defaults


def test_unknown_or_mistyped_keys_fail_before_training():
    with pytest.raises(ConfigError, match="unknown key 'embed_dims'.*'embed_dim'"):
        get_model("BPR")(embed_dims=8)
    with pytest.raises(ConfigError, match="'learning_rate' expects"):
        get_model("BPR")(learning_rate="fast")
    with pytest.raises(ConfigError, match="must be one of"):
        get_model("BPR")(optimizer="adamx")


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_cli_help_lists_model_options_and_errors_are_clear():
    out = run_cli("-m", "BPR", "--help")
    assert out.returncode == 0
    assert "--embed_dim" in out.stdout and "size of the user / item vectors" in out.stdout
    assert "(default: 64)" in out.stdout and "--early_stop_metric" in out.stdout
    bad = run_cli("-m", "BRP")
    assert bad.returncode == 2 and "Did you mean 'BPR'" in bad.stderr
    bad = run_cli("-d", "ml-10")
    assert bad.returncode == 2 and "unknown dataset 'ml-10'" in bad.stderr
    bad = run_cli("--embed_dims", "8")
    assert bad.returncode == 2 and "Did you mean '--embed_dim'" in bad.stderr.replace("'embed_dim'", "'--embed_dim'")
    bad = run_cli("--epochs", "many")
    assert bad.returncode == 2 and "'epochs' expects int" in bad.stderr


def test_same_seed_gives_identical_metrics(split, tmp_path):
    a = get_model("BPR")(**small()).fit(split, run_dir=tmp_path / "a")
    b = get_model("BPR")(**small()).fit(split, run_dir=tmp_path / "b")
    assert a == b
    c = get_model("BPR")(**small(seed=7)).fit(split, run_dir=tmp_path / "c")
    assert c != a


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "adagrad", "rmsprop", "sparse_adam"])
def test_optimizers_train(optimizer, split, tmp_path):
    model = get_model("BPR")(**small(optimizer=optimizer, learning_rate=0.05))
    model.fit(split, run_dir=tmp_path)
    assert all(np.isfinite(v) for v in model.eval_phase_results["test"].values())


def test_scheduler_really_steps(split, tmp_path):
    model = get_model("BPR")(**small(scheduler="step", scheduler_step_size=1, scheduler_gamma=0.5,
                                     learning_rate=0.08, epochs=3, early_stop_patience=10))
    model.fit(split, run_dir=tmp_path)
    lr = model.trainer.optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx(0.08 * 0.5 ** 3)


def test_gradient_clipping_is_applied(split, tmp_path, monkeypatch):
    seen = []
    orig = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: seen.append(k) or orig(*a, **k))
    get_model("BPR")(**small(gradient_clip=0.1, epochs=1)).fit(split, run_dir=tmp_path)
    assert seen


def test_run_writes_config_logs_checkpoints_and_recommends_original_ids(split, tmp_path):
    model, metrics = recstudio.run(model="BPR", dataset=split, run_dir=str(tmp_path), **small())
    run_dir = model.run_dir
    assert (run_dir / "config.yaml").is_file() and (run_dir / "test_metrics.json").is_file()
    assert (run_dir / "logs" / "metrics.csv").is_file()
    assert (run_dir / "checkpoints" / "best.ckpt").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    items, scores = model.recommend(["u0", "u1"], k=3)
    assert items.shape == (2, 3) and all(str(i).startswith("i") for i in items.ravel())
    assert (np.diff(scores, axis=1) <= 0).all()
    with pytest.raises(DataError, match="unknown user ids"):
        model.recommend(["nobody"], k=3)
    with pytest.raises(DataError, match="k must be between 1"):
        model.recommend(["u0"], k=0)
    loaded = recstudio.load(run_dir / "checkpoints" / "best.ckpt")
    assert (loaded.recommend(["u0"], k=3)[0] == model.recommend(["u0"], k=3)[0]).all()


def test_load_rejects_other_files(tmp_path):
    p = tmp_path / "x.pt"
    torch.save({"state_dict": {}}, p)
    with pytest.raises(DataError, match="not a RecStudio checkpoint"):
        recstudio.load(p)
    with pytest.raises(DataError, match="does not exist"):
        recstudio.load(tmp_path / "missing.pt")


def test_blocks_by_name_or_instance(split, tmp_path):
    model, _ = recstudio.run(model="BPR", dataset=split, loss="softmax", run_dir=str(tmp_path), **small())
    assert type(model.loss_fn).__name__ == "SoftmaxLoss"
    model, _ = recstudio.run(model="BPR", dataset=split, loss="bpr", sampler="popularity",
                             run_dir=str(tmp_path), **small())
    assert type(model.sampler).__name__ == "PopularitySampler"
    model, _ = recstudio.run(model="BPR", dataset=split, loss="sampled_softmax", sampler="uniform", num_neg=5,
                             run_dir=str(tmp_path), **small())
    assert model.loss_fn.uses_logq
    from recstudio.model.loss.pairwise import HingeLoss
    model, _ = recstudio.run(model="BPR", dataset=split, loss=HingeLoss(margin=0.5), run_dir=str(tmp_path),
                             **small())
    assert model.loss_fn.margin == 0.5
    assert recstudio.load(model.save(tmp_path / "h.pt")).config["loss"] == "hinge"
    with pytest.raises(ConfigError, match="unknown loss 'bprr'"):
        recstudio.run(model="BPR", dataset=split, loss="bprr", run_dir=str(tmp_path), **small())


def test_ann_top_k_in_evaluation_and_recommend(split, tmp_path):
    pytest.importorskip("faiss")
    exact_model, exact = recstudio.run(model="BPR", dataset=split, run_dir=str(tmp_path), **small())
    flat_model, flat = recstudio.run(model="BPR", dataset=split, ann="flat", run_dir=str(tmp_path), **small())
    assert flat == pytest.approx(exact)
    assert (flat_model.recommend(["u0", "u3"], k=5)[0] == exact_model.recommend(["u0", "u3"], k=5)[0]).all()
    with pytest.raises(ConfigError, match="needs item vectors"):
        recstudio.run(model="NCF", dataset=split, ann="ivf", run_dir=str(tmp_path), epochs=1, quiet=True)
    with pytest.raises(ConfigError, match="decomposable"):
        recstudio.run(model="BPR", dataset=split, ann="ivf", score_func="mlp", run_dir=str(tmp_path), **small())


def test_sampled_protocol_and_coverage(split, tmp_path):
    with pytest.raises(ConfigError, match="early_stop_metric 'mrr@10' is not among the evaluated metrics"):
        recstudio.run(model="BPR", dataset=split, metrics=["hit"], run_dir=str(tmp_path), **small())
    model, full = recstudio.run(model="BPR", dataset=split, metrics=["hit", "ndcg", "item_coverage"],
                                cutoffs=[5, 10], early_stop_metric="ndcg@10", run_dir=str(tmp_path), **small())
    assert 0 < full["item_coverage@10"] <= 1 and set(full) == {f"{m}@{k}" for m in ("hit", "ndcg", "item_coverage")
                                                                for k in (5, 10)}
    model.config.update(eval_protocol="sampled", eval_negatives=5, metrics=["hit", "ndcg"])
    sampled = model.evaluate(split, "test")
    # a target ranked among its user's targets + 5 negatives is in the top 5 at least as often
    assert sampled["hit@5"] >= full["hit@5"]


def test_num_threads_holds_while_fitting_and_is_restored(split, tmp_path):
    from pytorch_lightning.callbacks import Callback

    class Record(Callback):
        seen = []

        def on_train_batch_start(self, *args):
            self.seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    model = get_model("BPR")(num_threads=1, epochs=1, embed_dim=8, quiet=True)
    model.fit(split, run_dir=tmp_path / "run", callbacks=[Record()])
    assert Record.seen and set(Record.seen) == {1}
    assert torch.get_num_threads() == before
    with pytest.raises(ConfigError, match="num_threads must be >= 1"):
        get_model("BPR")(num_threads=0, epochs=1, quiet=True).fit(split, run_dir=tmp_path / "bad")
