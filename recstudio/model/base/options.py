"""Training and evaluation options shared by every model (the ``train`` config layer)."""
from typing import Dict

from recstudio.model.optim import OPTIMIZERS, SCHEDULERS, registered_spelling
from recstudio.utils.options import NUMBER, Option

#: every training / evaluation key; a model's YAML may override their defaults
TRAIN_OPTIONS: Dict[str, Option] = {
    "epochs": Option(100, (int,), "maximum number of training epochs"),
    "batch_size": Option(2048, (int,), "training examples per batch"),
    "eval_batch_size": Option(256, (int,), "users per evaluation batch"),
    "learning_rate": Option(1e-3, NUMBER, "optimizer learning rate"),
    "optimizer": Option("adam", (str,), "optimizer (a name from recstudio.model.optim.OPTIMIZERS)",
                        choices=tuple(OPTIMIZERS.names()), canonical=registered_spelling(OPTIMIZERS)),
    "adam_betas": Option([0.9, 0.999], (list, tuple), "(beta1, beta2) of the adam / adamw / sparse_adam optimizers"),
    "weight_decay": Option(0.0, NUMBER, "L2 penalty added by the optimizer (not used by sparse_adam)"),
    "scheduler": Option(None, (str,), "learning-rate scheduler: step, exponential, cosine, plateau, plateau_fuxictr (lr x gamma at every "
                        "non-improving validation, the CTR default) (null: none)",
                        choices=tuple(SCHEDULERS.names()), nullable=True, canonical=registered_spelling(SCHEDULERS)),
    "scheduler_step_size": Option(10, (int,), "epochs between decays of the 'step' scheduler"),
    "scheduler_gamma": Option(0.5, NUMBER, "decay factor of the step / exponential / plateau schedulers"),
    "gradient_clip": Option(None, NUMBER, "clip the gradient norm to this value (null: no clipping)",
                            nullable=True),
    "early_stop_metric": Option("mrr@10", (str,), "validation metric for early stopping and the best checkpoint"),
    "early_stop_patience": Option(10, (int,), "validations without improvement before stopping"),
    "val_every": Option(1, (int,), "validate every this many epochs"),
    "metrics": Option(["recall", "precision", "map", "ndcg", "mrr", "hit"], (list, tuple),
                      "evaluation metrics (ranking metrics at every cutoff)"),
    "cutoffs": Option([10], (list, tuple), "cutoffs of the ranking metrics"),
    "eval_protocol": Option("full", (str,), "'full' ranking over all items, or 'sampled' against negatives",
                            choices=("full", "sampled")),
    "eval_targets": Option("set", (str,), "how a phase's targets are ranked: 'set': one ranking per user against its "
                           "evaluation history, all its targets relevant (leave-one-out: the last item); 'each': one "
                           "ranking per target interaction, against every interaction before it (earlier targets "
                           "included), metrics averaged over targets; needs a temporal split (split_mode loo or "
                           "split_order time); see docs/metrics.md", choices=("set", "each")),
    "eval_mask_history": Option(True, (bool,), "full ranking: mask the user's evaluation history (the interactions "
                                "before the target) so that only new items are ranked; false for repeat consumption "
                                "(re-listens, re-purchases, items revisited in a session, RepeatNet): every item is "
                                "ranked and a target the user had before counts as a hit. See docs/metrics.md"),
    "eval_negatives": Option(100, (int,), "negatives per user for eval_protocol='sampled'"),
    "eval_negative_sampling": Option("uniform", (str,), "how eval_protocol='sampled' draws negatives",
                                     choices=("uniform", "popularity")),
    "ann": Option(None, (str,), "ANN index for top-k retrieval of item-tower models: flat, ivf, hnsw "
                  "(null: exact torch top-k)", choices=("flat", "ivf", "hnsw"), nullable=True),
    "accelerator": Option("cpu", (str,), "Lightning accelerator: cpu, gpu, auto"),
    "num_threads": Option(None, (int,), "CPU threads of torch's intra-op parallelism while fit() runs (null: torch's "
                          "default, one per core; the previous value is restored after). 1 avoids a ~10x slow-down "
                          "of small models on a 2-core machine that other processes also use", nullable=True),
    "devices": Option(1, (int, str), "number of devices (or 'auto')"),
    "strategy": Option("auto", (str,), "Lightning strategy: ddp (command line, torchrun, SLURM), ddp_spawn / "
                       "ddp_notebook (from Python / Jupyter); see docs/distributed.md"),
    "num_nodes": Option(1, (int,), "machines of a multi-node run (torchrun / SLURM), each running `devices` processes"),
    "precision": Option("32-true", (str, int), "Lightning precision, e.g. 16-mixed, bf16-mixed"),
    "num_workers": Option(0, (int,), "data-loader worker processes"),
    "train_loop": Option("auto", (str,), "'auto': a whole training epoch as one Lightning step when nothing needs "
                         "Lightning's per-batch hooks (same batches, draws and updates, without its per-step "
                         "overhead; see recstudio/train/fused.py); 'per_step': always Lightning's per-step loop",
                         choices=("auto", "per_step")),
    "content_field": Option(None, (str,), "float_seq item field holding item content vectors, for models that "
                            "need item content (null: the only float_seq item field)", nullable=True),
    "run_dir": Option("runs", (str,), "folder for checkpoints, logs and configs of runs"),
    "mode": Option("light", (str,), "'light': epoch summaries; 'detail': also statistics and progress bars; "
                   "'tune': an NNI trial (parameters from the tuner, metrics reported to NNI, quiet; "
                   "started by `bash tune.sh config.yaml`, see docs/tuning.md)",
                   choices=("light", "detail", "tune")),
    "quiet": Option(False, (bool,), "print nothing (used by tuning trials)"),
    # model-based negative samplers (recstudio/model/sampler/model_based.py)
    "sampler_refresh_steps": Option(0, (int,), "refresh a model-based sampler from the current item vectors every "
                                    "this many training steps (0: at the start of every epoch)"),
    "sampler_clusters": Option(16, (int,), "k-means codewords per codebook of the cluster_* / midx_* samplers"),
    "sampler_kmeans_iters": Option(10, (int,), "Lloyd iterations of the cluster_* / midx_* samplers' k-means at each "
                                   "refresh (faiss.Kmeans when installed, else torch)"),
    "sampler_metric": Option("auto", (str,), "score of a model-based sampler: ip, l2, or auto (the model's score "
                             "function)", choices=("auto", "ip", "l2")),
    "sampler_candidates": Option(32, (int,), "uniform candidates per row of the sir sampler, per negative of dns"),
    "sampler_checkpoint": Option(None, (str,), "checkpoint or run directory of the trained item-tower model the "
                                 "retriever sampler proposes from (same dataset)", nullable=True),
    "sampler_top_n": Option(100, (int,), "neighbours of the positive the retriever sampler proposes from"),
    "sampler_uniform_mix": Option(0.5, NUMBER, "share of uniform draws of the retriever sampler, in (0, 1]"),
    "sampler_batch_negatives": Option(None, (int,), "in-batch negatives per row of the mixed sampler: null for all "
                                      "B - 1 other rows, or n >= 1 random other rows (bounds memory when a batch "
                                      "holds thousands of positions, e.g. a sequential model)", nullable=True),
    "warp_max_trials": Option(100, (int,), "draws of the warp_exact loss before it gives up on a positive"),
}
