"""``Recommender``: the LightningModule every RecStudio model derives from.

It owns the configuration, the optimizer and scheduler, the training and evaluation steps,
``fit`` / ``evaluate`` and saving with id maps; the inference API (``recommend``,
``recommend_all``, ``similar_items``) comes from :class:`~recstudio.model.base.inference.InferenceMixin`.
Subclasses (the three bases in this package) build their blocks in :meth:`build_blocks` and say
how to score.
"""
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import pytorch_lightning as pl
import torch

from recstudio.data.split import DataSplit
from recstudio.data.types import DATASET_TYPES
from recstudio.data.types.evaluation import EvalDataset
from recstudio.model.base.config import data_config, portable_config, resolve_config
from recstudio.model.base.inference import InferenceMixin
from recstudio.model.base.epoch_loss import EpochLossMixin
from recstudio.model.base.context import FeatureStore, ModelContext, check_needs
from recstudio.model.base.metrics import (CTRAccumulator, RankingAccumulator, RatingAccumulator,
                                          SampledRankingAccumulator, monitor_mode)
from recstudio.utils.errors import ConfigError, DataError

#: help text of the training keys most models declare in their YAML
COMMON_HELP = {
    "loss": "training loss (a name from recstudio.model.loss.LOSSES)",
    "sampler": "negative sampler: masked_uniform (drawn by the dataset, never a positive of the user), "
               "uniform, popularity, inbatch, mixed (in-batch + uniform), shared_uniform (one set per batch); "
               "model-based (item-tower models): cluster_uni, cluster_pop, midx_uni, midx_pop, sir, dns, retriever "
               "(see the sampler_* keys)",
    "num_neg": "negatives per positive",
    "sampler_alpha": "exponent of popularity^alpha for the popularity sampler",
}


class Recommender(InferenceMixin, EpochLossMixin, pl.LightningModule):
    """Base of every model.

    Args:
        config: a flat dict of config keys (data, training and the model's own), or ``None``.
        **overrides: more keys; they win over ``config``.

    Hooks a model may override: :meth:`_get_dataset_class`, :meth:`_dataset_kwargs`,
    :meth:`_get_loss_func`, :meth:`_get_sampler`, and in the tower bases
    ``_get_item_encoder``, ``_get_query_encoder``, ``_get_score_func``.

    Example:
        >>> model = recstudio.get_model("BPR")(embed_dim=32)          # doctest: +SKIP
        >>> metrics = model.fit("ml-100k")
        >>> model.recommend(["196"], k=5)
    """

    base_name = "Recommender"
    dataset_type = "triplet"
    #: 'ranking' (full-ranking metrics) or 'rating' (rmse / mae on the phase's interactions)
    eval_task = "ranking"
    #: 'gradient' (Lightning optimisation), 'closed_form' (fit_closed_form once) or
    #: 'alternating' (alternating_step per batch of the training loader, no optimizer)
    fit_mode = "gradient"
    #: whether top-k can come from an ANN index over item vectors (item-tower models)
    supports_ann = False
    #: what the model needs from the data beyond ids and histories (see
    #: :mod:`recstudio.model.base.context`): train_graph, user_features, item_features, kg, social, item_content
    needs: frozenset = frozenset()
    #: meaning of each key of the model YAML's ``model`` section
    option_help: Dict[str, str] = {}
    model_name = "Recommender"
    category = ""
    paper = ""

    def __init__(self, config: Optional[Mapping[str, Any]] = None, dataset_config: Optional[Mapping] = None,
                 **overrides):
        super().__init__()
        self.config = resolve_config(type(self), dataset_config, None, {**(config or {}), **overrides})
        self._check_metrics()
        self.meta: Optional[ModelContext] = None
        self.eval_phase_results: Dict[str, Dict[str, float]] = {}
        self._accumulator = None
        self.automatic_optimization = self.fit_mode == "gradient"

    def cfg(self, key: str, default: Any = None) -> Any:
        return self.config.get(key, default)

    def _check_metrics(self) -> None:
        """The early-stopping metric must be one of the metrics evaluated (checked before training)."""
        from recstudio.utils.suggest import did_you_mean
        cfg = self.config
        if self.eval_task in ("rating", "ctr") and cfg.get("eval_targets", "set") != "set":  # seq-eval
            raise ConfigError(f"eval_targets={cfg['eval_targets']!r} is a ranking protocol; {self.model_name} is "
                              f"evaluated by {self.eval_task} metrics on the phase's rows. Use eval_targets='set'.")
        if not cfg.get("eval_mask_history", True) and (self.eval_task in ("rating", "ctr")
                                                        or cfg["eval_protocol"] == "sampled"):
            what = (f"{self.model_name} is evaluated by {self.eval_task} metrics on the phase's rows"
                    if self.eval_task in ("rating", "ctr") else
                    "eval_protocol 'sampled' ranks each target against items the user never had")
            raise ConfigError(f"eval_mask_history=false changes full ranking only; {what}. Use eval_protocol='full' "
                              "(a ranking model) or leave eval_mask_history at true.")
        if self.eval_task in ("rating", "ctr"):
            names = list(cfg["metrics"])
            if self.eval_task == "ctr":
                CTRAccumulator.check(names)
        else:
            names = [f"{m}@{k}" for m in cfg["metrics"] for k in cfg["cutoffs"]]
        if cfg["early_stop_metric"] not in names:
            raise ConfigError(f"early_stop_metric {cfg['early_stop_metric']!r} is not among the evaluated metrics "
                              f"{names}." + did_you_mean(cfg["early_stop_metric"], names)
                              + " Set early_stop_metric to one of them, or add its metric / cutoff.")

    # ---- hooks ---------------------------------------------------------------------------
    def _get_dataset_class(self):
        """The training dataset type (a class of :mod:`recstudio.data.types`)."""
        return DATASET_TYPES[self.dataset_type]

    def _block_context(self) -> Dict[str, Any]:
        """Values blocks may take from the data (``num_items``, popularity counts, the seed)."""
        return {"num_items": self.meta.num_items, "item_counts": self.meta.item_counts, "seed": self.config["seed"]}

    def _get_loss_func(self):
        from recstudio.model.loss import build_loss
        spec = self.cfg("loss")
        context = {**self._block_context(), "max_trials": self.cfg("warp_max_trials", 100)}
        return None if spec is None else build_loss(spec, context=context)

    def _get_sampler(self):
        """The ``sampler`` key. ``masked_uniform``: for triplet datasets the training dataset draws the
        negatives (exact exclusion of the user's train items, fresh each epoch), so the model holds no
        sampler; other datasets (sequences, ...) have no ``neg_item`` column, so a negative-based loss
        gets a :class:`MaskedUniformSampler` that excludes each row's positives and history."""
        from recstudio.model.sampler import build_sampler
        spec = self.cfg("sampler")
        if spec is None:
            return None
        if spec == "masked_uniform":
            if self.dataset_type == "triplet" or not self.loss_needs("needs_negatives"):
                return None
            from recstudio.model.sampler import MaskedUniformSampler
            return MaskedUniformSampler(self.meta.num_items)  # torch's global RNG, seeded by fit
        kwargs = {"alpha": self.cfg("sampler_alpha", 1.0)} if spec == "popularity" else {}
        return build_sampler(spec, context={**self._sampler_context(), **self._block_context()}, **kwargs)

    def _sampler_context(self) -> Dict[str, Any]:
        """Options of the model-based samplers from the ``sampler_*`` keys (each sampler takes the ones
        its constructor has; see recstudio/model/sampler/model_based.py)."""
        cfg = self.cfg
        return {"num_clusters": cfg("sampler_clusters", 16), "kmeans_iters": cfg("sampler_kmeans_iters", 10),
                "metric": cfg("sampler_metric", "auto"), "num_candidates": cfg("sampler_candidates", 32),
                "checkpoint": cfg("sampler_checkpoint"), "top_n": cfg("sampler_top_n", 100),
                "uniform_mix": cfg("sampler_uniform_mix", 0.5), "alpha": cfg("sampler_alpha", 1.0),
                "batch_negatives": cfg("sampler_batch_negatives")}

    def _dataset_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments of the training dataset. Triplet batches join no feature tables: a model
        that declares ``user_features`` / ``item_features`` gathers exactly the fields it uses from its
        :class:`FeatureStore` buffers by id, in training and evaluation alike."""
        if self.dataset_type != "triplet":
            return {}
        kwargs: Dict[str, Any] = {"join_features": False}
        if self.loss_needs("needs_negatives") and self.cfg("sampler") == "masked_uniform":
            kwargs.update(num_neg=self.cfg("num_neg", 1), neg_sampling="uniform")
        return kwargs

    def loss_needs(self, flag: str) -> bool:
        loss = getattr(self, "loss_fn", None)
        if loss is None:
            from recstudio.model.loss import LOSSES
            name = self.cfg("loss")
            loss = LOSSES.get(name) if isinstance(name, str) else name
        return bool(getattr(loss, flag, False)) if loss is not None else False

    def build_blocks(self) -> None:
        """Create the model's modules from ``self.meta`` and ``self.config``."""

    # ---- building --------------------------------------------------------------------------
    def context_from(self, split: DataSplit) -> ModelContext:
        """The :class:`ModelContext` of ``split`` holding what this model declares in ``needs``."""
        return ModelContext.from_split(split, check_needs(self.needs, type(self).__name__),
                                       content_field=self.cfg("content_field"))

    @property
    def context(self) -> Optional[ModelContext]:
        """What the model sees of its data (``self.meta`` is the same object)."""
        return self.meta

    def build(self, meta: ModelContext) -> "Recommender":
        """Create every block for data described by ``meta`` (called by :meth:`fit` and ``load``)."""
        self.meta = meta
        missing = sorted(set(self.needs) - set(meta.needs))
        if missing:
            raise ConfigError(f"{self.model_name} needs {missing} from the data, which this context was built "
                              "without; build it with model.context_from(split).")
        self._register_data_buffers(meta)
        if self.config["ann"] is not None and not self.supports_ann:
            raise ConfigError(f"ann={self.config['ann']!r} needs item vectors, which {self.model_name} (a "
                              f"{self.base_name} model) does not have; remove ann to rank exactly.")
        self.loss_fn = self._get_loss_func()
        self.sampler = self._get_sampler()
        self.build_blocks()
        return self

    def _register_data_buffers(self, meta: ModelContext) -> None:
        """Feature and content tensors the model declared, as buffers that move with it: ``user_feats``,
        ``item_feats`` (:class:`FeatureStore`: ``self.item_feats(ids)`` gathers every field) and
        ``item_content`` (``[num_items, d]``)."""
        if "user_features" in self.needs:
            self.user_feats = FeatureStore(meta.user_fields, meta.user_features)
        if "item_features" in self.needs:
            self.item_feats = FeatureStore(meta.item_fields, meta.item_features)
        if "item_content" in self.needs:
            if meta.item_content is None:
                raise ConfigError(f"{self.model_name} needs item content: set content_field to a float_seq item "
                                  "field, or give the context an item_content tensor [num_items, d].")
            self.register_buffer("item_content", meta.item_content, persistent=False)

    def prepare_data_split(self, data) -> DataSplit:
        """A split from a dataset name, a :class:`RecDataset` or a :class:`DataSplit`."""
        from recstudio.data.dataset import RecDataset
        from recstudio.data.split import SPLIT_KEYS
        if isinstance(data, DataSplit):
            return data
        if isinstance(data, str):
            from recstudio.data import load_dataset
            data = load_dataset(data, **self._data_overrides(data))
        if isinstance(data, RecDataset):
            return data.split(**{k: self.config[k] for k in SPLIT_KEYS})
        raise DataError(f"fit() takes a dataset name, a RecDataset or a DataSplit, got {type(data).__name__}.")

    def _data_overrides(self, name: str) -> Dict[str, Any]:
        """Data keys that differ from the dataset's own defaults (so its YAML stays in force)."""
        from recstudio.data.config import resolve_data_config
        from recstudio.data.registry import get_spec
        base = resolve_data_config(get_spec(name, data_dir=self.config.get("data_dir")).config)
        mine = data_config(self.config)
        return {k: v for k, v in mine.items() if v != base.get(k)}

    # ---- optimisation ----------------------------------------------------------------------
    def configure_optimizers(self):
        """The ``optimizer`` and ``scheduler`` keys, built from their registries (:mod:`recstudio.model.optim`)."""
        from recstudio.model.optim import configure
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            return None
        if self.config["optimizer"] == "sparse_adam":
            sparse = {id(m.weight) for m in self.modules() if isinstance(m, torch.nn.Embedding) and m.sparse}
            dense = [n for n, p in self.named_parameters() if p.requires_grad and id(p) not in sparse]
            if dense:
                raise ConfigError(f"sparse_adam updates only sparse embedding tables, but {type(self).__name__} "
                                  f"also has dense parameters {dense[:4]}; use optimizer adam.")
        return configure(params, self.config, self.monitor)

    @property
    def sparse_embeddings(self) -> bool:
        """Whether embedding tables produce sparse gradients (with ``optimizer: sparse_adam``)."""
        return self.config["optimizer"] == "sparse_adam"

    @property
    def monitor(self) -> str:
        return f"valid/{self.config['early_stop_metric']}"

    @property
    def monitor_mode(self) -> str:
        return monitor_mode(self.config["early_stop_metric"])

    # ---- scoring primitives (the bases implement them) ---------------------------------------
    def prepare_scoring(self, batch: Dict[str, torch.Tensor]) -> Any:
        """Per-batch state shared by the scoring calls (an item-tower model's query vectors)."""
        return None

    def score_candidates(self, batch: Dict[str, torch.Tensor], state: Any, items: torch.Tensor) -> torch.Tensor:
        """Scores of candidate ``items`` ``[B]`` or ``[B, K]`` for the batch's rows."""
        raise ConfigError(f"{type(self).__name__} defines no score_candidates().")

    def score_all_candidates(self, batch: Dict[str, torch.Tensor], state: Any) -> torch.Tensor:
        """Scores ``[B, num_items]`` of every item (column 0 = padding)."""
        raise ConfigError(f"{type(self).__name__} defines no score_all_candidates().")

    # ---- training --------------------------------------------------------------------------
    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Loss of a batch with one positive item per row, using what the loss declares it needs:
        all-item scores (full softmax), negatives (from the dataset's ``neg_item`` or the sampler),
        proposal log-probabilities (logQ correction) and labels (pointwise losses)."""
        loss = self.loss_fn
        if loss is None:
            raise ConfigError(f"{type(self).__name__} has no loss; set the loss key.")
        state = self.prepare_scoring(batch)
        pos_ids = batch[self.meta.iid_field]
        pos_score = self.score_candidates(batch, state, pos_ids)
        inputs: Dict[str, Optional[torch.Tensor]] = {"pos_score": pos_score}
        if loss.needs_all_scores:
            all_score = self.score_all_candidates(batch, state)
            all_score[:, 0] = float("-inf")
            inputs.update(all_score=all_score, pos_index=pos_ids)
        if getattr(loss, "needs_vectors", False):  # chunked_softmax: the vectors, not the [B, N] scores
            from recstudio.model.loss.chunked import decomposed_vectors
            if not (isinstance(state, torch.Tensor) and hasattr(self, "item_vectors")):
                raise ConfigError(f"loss chunked_softmax needs query and item vectors; {type(self).__name__} "
                                  "has no item tower. Use loss softmax.")
            q, v = decomposed_vectors(self.score_func, state, self.item_vectors())
            inputs.update(query=q, item_vectors=v, pos_index=pos_ids)
        if getattr(loss, "draws_negatives", False):  # warp_exact: draws through the sampler until a violation
            return loss.draw_and_score(self.sampler, state if isinstance(state, torch.Tensor) else None, pos_ids,
                                       pos_score, lambda ids: self.score_candidates(batch, state, ids))
        if loss.needs_negatives:
            if "neg_item" in batch:  # drawn by the dataset, never a positive of the user
                neg_ids, log_pos, log_neg = batch["neg_item"], None, None
            elif self.sampler is not None:
                query = state if isinstance(state, torch.Tensor) else None
                log_pos, neg_ids, log_neg = self.sampler(query, self.config.get("num_neg", 1), pos_ids, None)
            else:
                raise ConfigError(f"loss {type(loss).__name__} needs negatives: set the sampler key.")
            from recstudio.model.sampler import is_shared
            if is_shared(neg_ids) and isinstance(state, torch.Tensor) and hasattr(self, "item_vectors"):
                # the same K items for every row: one [B, d] x [d, K] product
                inputs["neg_score"] = self.score_func.score_all(state, self.encode_items(neg_ids[0]))
            else:
                inputs["neg_score"] = self.score_candidates(batch, state, neg_ids)
            inputs["neg_is_pos"] = neg_ids == pos_ids[:, None]
            if loss.uses_logq:
                inputs.update(log_pos_prob=log_pos, log_neg_prob=log_neg)
        if loss.pointwise:
            rating = self.meta.rating_field
            inputs["label"] = batch[rating].float() if rating and rating in batch else torch.ones_like(pos_score)
        return loss(**inputs)

    def fit_closed_form(self, split: DataSplit) -> None:
        """Compute the parameters in one step (``fit_mode = 'closed_form'`` models)."""
        raise ConfigError(f"{type(self).__name__} has fit_mode 'closed_form' but no fit_closed_form().")

    def alternating_step(self, batch: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        """Update parameters from one training batch without an optimizer (``fit_mode = 'alternating'``);
        may return a loss value to log."""
        raise ConfigError(f"{type(self).__name__} has fit_mode 'alternating' but no alternating_step().")

    def training_step(self, batch, batch_idx):
        fused = getattr(batch, "train_epoch", None)  # a whole epoch as one batch (recstudio.train.fused)
        if callable(fused):
            return fused(self)
        if self.fit_mode == "alternating":
            with torch.no_grad():
                loss = self.alternating_step(batch)
            self._count_solver_step()
            if loss is not None:
                self._loss_sum += float(loss)
                self._loss_count += 1
                self.log("train/loss", float(loss), on_step=False, on_epoch=True, batch_size=1, sync_dist=True)
            return None
        loss = self.training_loss(batch)
        if loss is not None:
            self._log_train_loss(float(loss.detach()), self._batch_size(batch), batch_idx)
        return loss

    # ---- evaluation ------------------------------------------------------------------------
    def score_users(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Scores ``[B, num_items]`` of every item for the users of an evaluation batch."""
        return self.score_all_candidates(batch, self.prepare_scoring(batch))

    def _eval_dataset(self, split: DataSplit, phase: str):
        if self.eval_task in ("rating", "ctr"):  # the phase's rows (ctr: labels and context come with them)
            from recstudio.data.types.triplet import TripletDataset
            return TripletDataset(split, phase, num_neg=0, join_features=False)
        with_time = "history_times" in self.needs  # a time-aware sequential model: batches carry time_seq
        if self.config.get("eval_targets", "set") == "each":  # seq-eval: one ranking per target interaction
            from recstudio.data.types.position_eval import PositionEvalDataset
            return PositionEvalDataset(split, phase, max_seq_len=self._eval_seq_len(), with_time=with_time)
        return EvalDataset(split, phase, max_seq_len=self._eval_seq_len(), with_time=with_time)

    def _eval_seq_len(self) -> Optional[int]:
        """History sequence length evaluation batches should carry (sequential models)."""
        return None

    def _new_accumulator(self):
        cfg = self.config
        if self.eval_task == "rating":
            return RatingAccumulator(cfg["metrics"])
        if self.eval_task == "ctr":
            return CTRAccumulator(cfg["metrics"])
        if cfg["eval_protocol"] == "sampled":
            return SampledRankingAccumulator(cfg["metrics"], cfg["cutoffs"], cfg["eval_negatives"],
                                             cfg["eval_negative_sampling"], self.meta.item_counts, cfg["seed"])
        return RankingAccumulator(cfg["metrics"], cfg["cutoffs"], num_items=self.meta.num_items)

    def _start_eval(self):
        self._accumulator = self._new_accumulator()

    def _accumulate(self, acc, batch, batch_number: Optional[int] = None) -> None:
        """Add one evaluation batch to ``acc``; ``batch_number`` (its position in the unsharded
        evaluation) seeds the negatives of sampled ranking."""
        if self.eval_task == "rating":
            state = self.prepare_scoring(batch)
            acc.add_ratings(self.score_candidates(batch, state, batch[self.meta.iid_field]),
                            batch[self.meta.rating_field])
        elif self.eval_task == "ctr":  # logits of the rows vs their 0/1 labels (the model's ctr_labels)
            state = self.prepare_scoring(batch)
            acc.add_predictions(self.score_candidates(batch, state, batch[self.meta.iid_field]),
                                self.ctr_labels(batch), batch[self.meta.uid_field])
        elif isinstance(acc, SampledRankingAccumulator):
            state = self.prepare_scoring(batch)
            acc.add_sampled(batch, lambda b, ids: self.score_candidates(b, state, ids), self.meta.num_items,
                            batch_number)
        else:
            _, ids = self.topk_items(batch, max(self.config["cutoffs"]),
                                     exclude_history=self.config.get("eval_mask_history", True))
            acc.add_topk(batch, ids, self.meta.num_items)

    def topk_items(self, batch: Dict[str, torch.Tensor], k: int, exclude_history: bool = True):
        """``(scores [B, k], item ids [B, k])`` of the batch's users, their history masked (id -1 pads
        rows with fewer rankable items). Item-tower models may answer from an ANN index."""
        from recstudio.eval import topk_masked
        scores = self.score_users(batch)
        if exclude_history:
            return topk_masked(scores, batch["history_indptr"], batch["history_indices"], k, inplace=True)
        return topk_masked(scores, None, None, k, inplace=True)

    def on_validation_epoch_start(self):
        self._start_eval()

    def on_test_epoch_start(self):
        self._start_eval()

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, batch_idx)

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, batch_idx)

    def _eval_step(self, batch, batch_idx):
        """Accumulate one evaluation batch. Under DDP each process gets every world_size-th batch
        (an empty one when it has none; see recstudio.train.distributed), so batch ``batch_idx`` of this
        process is batch ``batch_idx * world_size + rank`` of the unsharded evaluation."""
        if self._batch_size(batch) == 0:
            return
        trainer = self._trainer  # batches are dealt round-robin to the processes
        number = batch_idx if trainer is None else batch_idx * trainer.world_size + trainer.global_rank
        self._accumulate(self._accumulator, batch, number)

    def _finish_eval(self, phase: str):
        """All-reduce the metric sums (under DDP), keep the results, log them as float64 (so
        they reach the calling process of a spawned run exactly); identical on every process,
        hence no sync_dist."""
        results = self._accumulator.compute(self.trainer.strategy if self._trainer is not None else None)
        self.eval_phase_results[phase] = results
        for k, v in results.items():
            self.log(f"{phase}/{k}", torch.tensor(v, dtype=torch.float64),
                     prog_bar=(k == self.config["early_stop_metric"]), sync_dist=False)

    def on_validation_epoch_end(self):
        self._finish_eval("valid")

    def on_test_epoch_end(self):
        self._finish_eval("test")

    # ---- the user API ----------------------------------------------------------------------
    def fit(self, data, run_dir: Optional[Union[str, Path]] = None, callbacks: Sequence[Any] = ()) -> Dict[str, float]:
        """Train on ``data`` (dataset name, RecDataset or DataSplit), early-stopping on validation,
        then evaluate the best checkpoint on the test phase, with the training engine
        (:func:`recstudio.train.fit_model`).

        Args:
            data: a dataset name, RecDataset or DataSplit.
            run_dir: the run folder (default ``runs/<model>-<dataset>-<time>``).
            callbacks: more Lightning callbacks (e.g. a tuner's reporting callback).

        Returns:
            The test metrics of the best validation checkpoint.
        """
        from recstudio.train.trainer import fit_model
        return fit_model(self, self.prepare_data_split(data), run_dir, callbacks=callbacks)

    def evaluate(self, split: DataSplit, phase: str = "test") -> Dict[str, float]:
        """Full-ranking metrics of ``phase`` without a Trainer (history masked)."""
        acc = self._new_accumulator()
        self.eval()
        with torch.no_grad():
            for batch in self._eval_dataset(split, phase).loader(self.config["eval_batch_size"]):
                self._accumulate(acc, {k: v.to(self.device) for k, v in batch.items()})
        return acc.compute()

    # ---- checkpoints -----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["recstudio"] = {"model": self.model_name, "config": portable_config(self.config),
                                   "meta": self.meta.to_state()}

    def save(self, path: Union[str, Path]) -> Path:
        """Save weights, config and data meta (id maps included) atomically to ``path``."""
        from recstudio.utils.io import atomic_path
        path = Path(path)
        with atomic_path(path, durable=True) as tmp:
            ckpt = {"state_dict": self.state_dict()}
            self.on_save_checkpoint(ckpt)
            torch.save(ckpt, tmp)
        return path

