"""Fused epochs (recstudio/train/fused.py): one Lightning step per epoch trains exactly like Lightning's
per-step loop (same parameters, metrics, losses, global step), and the runs it must not fuse are not."""
import pytest
import torch

from recstudio.model.registry import get_model
from recstudio.train.fused import fused_epoch_blockers
from recstudio.train.trainer import fit_model, make_trainer
from tests.model.test_conformance import tiny_config

#: one model per base / family whose training loop differs: two-tower, graph (cache invalidated per step),
#: sequential, feature (CTR), social, content, a sampled-softmax item tower
MODELS = ["BPR", "LightGCN", "SASRec", "DeepFM", "DiffNet", "VBPR", "NCF"]


def _fit(name, split, tmp_path, loop, **extra):
    cls = get_model(name)
    model = cls(**{**tiny_config(cls), "epochs": 3, "early_stop_patience": 5, "seed": 7, "train_loop": loop,
                   "scheduler": None, **extra})  # a scheduler keeps the per-step loop (DeepFM's default has one)
    metrics = fit_model(model, split, run_dir=tmp_path / loop)
    return model, metrics


@pytest.mark.parametrize("name", MODELS)
def test_fused_epochs_train_exactly_like_per_step(name, tiny_world, tmp_path):
    cls = get_model(name)
    probe = cls(**{**tiny_config(cls), "scheduler": None})
    trainer = make_trainer(probe.build(probe.context_from(tiny_world)), tmp_path / "probe", has_valid=True)
    assert fused_epoch_blockers(probe, trainer) == []  # the comparison below is fused against per-step
    fused, m_fused = _fit(name, tiny_world, tmp_path, "auto")
    plain, m_plain = _fit(name, tiny_world, tmp_path, "per_step")
    assert m_fused == m_plain
    a, b = fused.state_dict(), plain.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    logs = [(tmp_path / loop / "metrics.csv").read_text() for loop in ("auto", "per_step")]
    strip = [[line.rsplit(",", 1)[0] for line in text.splitlines()] for text in logs]  # wall_time_s differs
    assert strip[0] == strip[1]
    import pandas as pd
    raw = [pd.read_csv(tmp_path / loop / "logs" / "metrics.csv") for loop in ("auto", "per_step")]
    assert raw[0]["step"].tolist() == raw[1]["step"].tolist()  # the loggers' step axis counts every batch


def test_fused_epochs_count_every_optimizer_step(tiny_world, tmp_path):
    cls = get_model("BPR")
    model = cls(**{**tiny_config(cls), "epochs": 2, "early_stop_patience": 5})
    trainer = make_trainer(model.build(model.context_from(tiny_world)), tmp_path, has_valid=True)
    assert fused_epoch_blockers(model, trainer) == []
    fit_model(model, tiny_world, run_dir=tmp_path / "run")
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    steps_per_epoch = -(-len(tiny_world.train) // model.config["batch_size"])
    assert ckpt["global_step"] == 2 * steps_per_epoch
    assert model.automatic_optimization  # restored after fit


@pytest.mark.parametrize("overrides,reason", [
    ({"train_loop": "per_step"}, "train_loop is 'per_step'"),
    ({"scheduler": "step"}, "scheduler is set"),
    ({"gradient_clip": 1.0}, "gradient_clip is set"),
    ({"sampler_refresh_steps": 3, "sampler": "cluster_uni", "loss": "sampled_softmax"}, "sampler_refresh_steps is set"),
])
def test_runs_that_keep_the_per_step_loop_say_why(overrides, reason, tiny_world, tmp_path):
    cls = get_model("BPR")
    model = cls(**{**tiny_config(cls), **overrides})
    trainer = make_trainer(model.build(model.context_from(tiny_world)), tmp_path, has_valid=True)
    assert reason in fused_epoch_blockers(model, trainer)


def test_models_with_their_own_training_step_or_manual_optimisation_are_not_fused(tiny_world, tmp_path):
    for name, reason in (("MultiVAE", "overrides training_step"), ("RecVAE", "not optimised automatically"),
                         ("EASE", "not optimised automatically")):
        cls = get_model(name)
        model = cls(**tiny_config(cls))
        trainer = make_trainer(model.build(model.context_from(tiny_world)), tmp_path / name, has_valid=True)
        assert any(reason in r for r in fused_epoch_blockers(model, trainer)), name


def test_a_callback_acting_per_batch_keeps_the_per_step_loop(tiny_world, tmp_path):
    from pytorch_lightning.callbacks import Callback

    class CountBatches(Callback):
        def __init__(self):
            self.seen = 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.seen += 1

    cls = get_model("BPR")
    model = cls(**{**tiny_config(cls), "epochs": 1})
    counter = CountBatches()
    fit_model(model, tiny_world, run_dir=tmp_path / "run", callbacks=[counter])
    assert counter.seen == -(-len(tiny_world.train) // model.config["batch_size"])  # every real batch


def test_train_loop_is_checked():
    from recstudio.utils.errors import ConfigError
    with pytest.raises(ConfigError, match="train_loop"):
        get_model("BPR")(train_loop="fused")
