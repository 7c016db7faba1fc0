"""``KnowledgeRecommender``: the base of knowledge-aware models (a knowledge graph beside the interactions).

A model of this family declares ``needs = {"kg"}`` (KGAT adds ``train_graph``) and so gets from its
:class:`~recstudio.model.base.context.ModelContext` the triples ``kg_head / kg_relation / kg_tail``
(entity and relation vocabularies, id 0 = padding), ``num_entities``, ``num_relations`` and
``item_entity`` (the entity of each item id; 0 for an item without one, counted by
``items_without_entity``). The base registers them as buffers (``self.kg_head`` ... ``self.item_entity``)
and, for every training batch of interactions, draws a batch of KG triples **on the model side** by
tensor indexing (:meth:`sample_kg_batch`): ``kg_batch_size`` triples uniformly with replacement, each
with a corrupted tail drawn uniformly over the entities other than the true tail (``kg_negatives:
head_tails``: other than every tail of the head, RecBole's KGSampler), from a generator seeded by the
config ``seed`` (so runs repeat).

How the two losses meet (``kg_schedule``):

- ``joint``: one optimizer step per batch on ``rec_loss + kg_weight * kg_loss`` (CKE).
- ``alternating``: per batch, one optimizer step on the rec loss, then one on ``kg_weight * kg_loss``
  (Lightning manual optimisation: the two phases interleave batch by batch, with as many KG batches of
  ``kg_batch_size`` triples, drawn with replacement, as interaction batches).
- ``epochs``: a whole CF epoch (one step on the rec loss per interaction batch), then a whole KG epoch: every
  triple once, in a random order, in batches of ``kg_batch_size``, one step on ``kg_weight * kg_loss`` each,
  with the same optimizer (:meth:`kg_epoch`; the schedule of KGAT's official code and of RecBole's
  ``KGATTrainer``), run after the epoch's last interaction batch, before validation.
  With both manual schedules learning-rate schedulers are stepped once per epoch; ``gradient_clip`` is not
  available.

Hooks a model overrides:

- ``build_blocks()`` (call ``super().build_blocks()`` for the towers), ``encode_query`` / ``encode_items`` /
  ``item_vectors`` (the :class:`~recstudio.model.base.itemtower.ItemTowerRecommender` ones);
- :meth:`kg_loss` ``(kg_batch) -> loss`` (required): typically ``kg_bpr_loss`` of a
  :class:`~recstudio.model.module.kg.TransR` scorer on the true and corrupted triples, via :meth:`kg_triple_loss`;
- :meth:`rec_loss` ``(batch) -> loss`` (default: the ``loss`` key on the towers' scores, plus
  ``reg_weight`` times the norm of the batch's user and item vectors).

Example:
    >>> import torch
    >>> from recstudio.model.family.knowledge import KnowledgeRecommender
    >>> from recstudio.model.module import IdEmbedding, TransE
    >>> class TinyKG(KnowledgeRecommender):          # doctest: +SKIP
    ...     def build_blocks(self):
    ...         super().build_blocks()
    ...         self.entity = IdEmbedding(self.meta.num_entities, self.cfg("embed_dim"))
    ...         self.scorer = TransE(self.meta.num_relations, self.cfg("embed_dim"))
    ...     def kg_loss(self, kg):
    ...         return self.kg_triple_loss(self.scorer, self.entity, kg)
"""
from typing import Dict, Iterator, Optional

import torch

from recstudio.model.base.itemtower import TOWER_HELP, TwoTowerRecommender
from recstudio.model.base.recommender import Recommender
from recstudio.model.module.kg import embedding_norm, kg_bpr_loss, kg_margin_loss
from recstudio.utils.errors import ConfigError, DataError
from recstudio.utils.options import Option

#: help text of the keys the family's models declare in their YAML ``model`` section
KG_HELP = {
    **TOWER_HELP,
    "kg_embed_dim": "size of the relation vectors (TransR's relation space)",
    "kg_weight": "weight of the knowledge-graph loss against the recommendation loss",
    "kg_batch_size": "KG triples per KG batch: drawn for each batch of interactions, or (kg_schedule 'epochs') the "
                     "batches of the KG epoch",
    "kg_schedule": "'joint' (one step on rec + kg_weight * kg loss), 'alternating' (a rec step, then a KG step) or "
                   "'epochs' (a CF epoch, then a KG epoch over every triple)",
    "kg_loss": "KG loss on the scores of true vs corrupted triples: 'bpr' (-ln sigma(pos - neg)) or 'margin'",
    "kg_margin": "margin of kg_loss 'margin' (max(0, margin - pos + neg))",
    "reg_weight": "weight of the L2 norm (RecBole's EmbLoss) of the batch's user / item vectors",
    "kg_reg_weight": "weight of the L2 norm (RecBole's EmbLoss) of the batch's projected triple vectors",
}
SCHEDULES = ("joint", "alternating", "epochs")
KG_NEGATIVES = ("true_tail", "head_tails")
#: keys every knowledge-aware model accepts without listing them in its YAML (``family_options``)
KG_OPTIONS = {
    "kg_negatives": Option(
        "true_tail", (str,), "corrupted tails of the KG loss: 'true_tail' (uniform over the entities other than the "
        "triple's own tail) or 'head_tails' (uniform over the entities that are no tail of the head under any "
        "relation: RecBole's KGSampler)", choices=KG_NEGATIVES),
}


class KnowledgeRecommender(TwoTowerRecommender):
    """Item tower + user tower + a knowledge graph; see the module docstring for the hooks.

    Args (config keys of the family; a model's YAML sets their defaults): ``kg_weight``, ``kg_batch_size``,
    ``kg_schedule``, ``kg_loss``, ``kg_margin``, ``reg_weight``, ``kg_reg_weight``, plus the tower keys
    (``embed_dim``, ``loss``, ``sampler``, ``num_neg``, ``score_func``).
    """

    base_name = "Knowledge"
    needs = frozenset({"kg"})
    option_help = dict(KG_HELP)
    family_options = dict(KG_OPTIONS)

    def __init__(self, config=None, dataset_config=None, **overrides):
        super().__init__(config, dataset_config, **overrides)
        schedule = self.cfg("kg_schedule", "joint")
        if schedule not in SCHEDULES:
            raise ConfigError(f"kg_schedule must be one of {SCHEDULES}, got {schedule!r}.")
        if self.cfg("kg_loss", "bpr") not in ("bpr", "margin"):
            raise ConfigError(f"kg_loss must be 'bpr' or 'margin', got {self.cfg('kg_loss')!r}.")
        if int(self.cfg("kg_batch_size", 1)) < 1:
            raise ConfigError(f"kg_batch_size must be >= 1, got {self.cfg('kg_batch_size')!r}.")
        if schedule in ("alternating", "epochs"):
            if self.config.get("gradient_clip") is not None:
                raise ConfigError(f"{type(self).__name__} with kg_schedule {schedule!r} takes separate CF and KG "
                                  "optimizer steps (manual optimisation), where Lightning cannot clip gradients; "
                                  "remove gradient_clip or use kg_schedule 'joint'.")
            self.automatic_optimization = False

    # ---- data ---------------------------------------------------------------------------------
    def _register_data_buffers(self, meta) -> None:
        super()._register_data_buffers(meta)
        if meta.kg_head is None or len(meta.kg_head) == 0:
            raise DataError(f"{self.model_name} needs knowledge-graph triples, but the dataset's .kg table is empty "
                            "(no triple names known entities); check its .kg / .link files.")
        for name in ("kg_head", "kg_relation", "kg_tail", "item_entity"):
            self.register_buffer(name, getattr(meta, name).long(), persistent=False)
        self._kg_generator = torch.Generator().manual_seed(int(self.config["seed"]))
        keys = None
        if self.cfg("kg_negatives", "true_tail") == "head_tails":  # sorted head * E + tail of every triple
            keys = torch.unique(self.kg_head * meta.num_entities + self.kg_tail)
        self.register_buffer("_head_tail_keys", keys, persistent=False)

    def sample_kg_batch(self, size: Optional[int] = None) -> Dict[str, torch.Tensor]:
        """``size`` (default ``kg_batch_size``) triples drawn uniformly with replacement:
        ``{head, relation, pos_tail, neg_tail}`` ``[size]`` on the model's device, ``neg_tail`` uniform over
        the entities ``1..num_entities-1`` other than ``pos_tail`` (exactly: a draw among the others)."""
        size = int(size or self.cfg("kg_batch_size"))
        idx = torch.randint(len(self.kg_head), (size,), generator=self._kg_generator)
        return self._corrupted_triples(idx.to(self.kg_head.device))

    def kg_epoch_batches(self, size: Optional[int] = None) -> Iterator[Dict[str, torch.Tensor]]:
        """Every triple once, in a random order (from the KG generator), in batches of ``size`` (default
        ``kg_batch_size``) shaped as :meth:`sample_kg_batch`'s, each with fresh corrupted tails."""
        size = int(size or self.cfg("kg_batch_size"))
        order = torch.randperm(len(self.kg_head), generator=self._kg_generator).to(self.kg_head.device)
        for start in range(0, len(order), size):
            yield self._corrupted_triples(order[start:start + size])

    def _corrupted_triples(self, idx: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The triples ``idx`` as ``{head, relation, pos_tail, neg_tail}``, ``neg_tail`` drawn uniformly over
        the entities ``1..num_entities-1`` other than ``pos_tail`` (exactly: a draw among the others), or with
        ``kg_negatives: head_tails`` over those that are no tail of the head at all (redrawn until so)."""
        pos, head = self.kg_tail[idx], self.kg_head[idx]
        m = self.meta.num_entities - 1  # real entities 1..m
        if m < 2:
            raise ConfigError("corrupting KG tails needs at least two entities.")
        shift = torch.randint(1, m, (len(idx),), generator=self._kg_generator).to(pos.device)
        neg = (pos - 1 + shift) % m + 1  # uniform over 1..m without pos
        if self._head_tail_keys is not None:
            neg = self._redraw_tails_of_head(head, neg, m)
        return {"head": head, "relation": self.kg_relation[idx], "pos_tail": pos, "neg_tail": neg}

    def _redraw_tails_of_head(self, head: torch.Tensor, neg: torch.Tensor, m: int, rounds: int = 100) -> torch.Tensor:
        """Redraw (uniformly over 1..m) every ``neg`` that is a tail of its ``head``, until none is."""
        keys, entities = self._head_tail_keys, self.meta.num_entities
        for _ in range(rounds):
            key = head * entities + neg
            at = torch.searchsorted(keys, key).clamp_(max=len(keys) - 1)
            hit = keys[at] == key
            if not bool(hit.any()):
                return neg
            fresh = torch.randint(1, m + 1, (int(hit.sum()),), generator=self._kg_generator).to(neg.device)
            neg = neg.masked_scatter(hit, fresh)
        raise DataError(f"kg_negatives 'head_tails': after {rounds} draws some heads still got only their own "
                        "tails; a head linked to (nearly) every entity has no negative tail. Use kg_negatives "
                        "'true_tail'.")

    def kg_epoch(self) -> float:
        """The KG epoch of ``kg_schedule: epochs``: one optimizer step on ``kg_weight * kg_loss`` per batch of
        :meth:`kg_epoch_batches`; returns the mean KG loss (logged as ``train/kg_loss``)."""
        opt, weight, total, count = self.optimizers(), float(self.cfg("kg_weight")), 0.0, 0
        for kg_batch in self.kg_epoch_batches():
            total, count = total + float(self._manual_step(opt, weight * self.kg_loss(kg_batch))), count + 1
        mean = total / max(count, 1)
        self.log("train/kg_loss", mean, on_step=False, on_epoch=True, batch_size=1, sync_dist=True)
        return mean

    # ---- losses -------------------------------------------------------------------------------
    def kg_loss(self, kg_batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The KG loss of a batch from :meth:`sample_kg_batch` (models define it)."""
        raise ConfigError(f"{type(self).__name__} must define kg_loss(kg_batch).")

    def kg_triple_loss(self, scorer, entity_vectors, kg_batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """``kg_loss`` (bpr / margin) of ``scorer`` on true vs corrupted triples, plus ``kg_reg_weight`` times
        the norm of the (projected) triple vectors. ``entity_vectors`` maps entity ids to vectors (a module
        or a callable)."""
        pos, neg, vectors = scorer.corrupted_scores(entity_vectors(kg_batch["head"]), kg_batch["relation"],
                                                    entity_vectors(kg_batch["pos_tail"]),
                                                    entity_vectors(kg_batch["neg_tail"]))
        if self.cfg("kg_loss") == "margin":
            loss = kg_margin_loss(pos, neg, float(self.cfg("kg_margin")))
        else:
            loss = kg_bpr_loss(pos, neg)
        reg = float(self.cfg("kg_reg_weight", 0.0))
        return loss + reg * embedding_norm(*vectors) if reg else loss

    def score_items_in_chunks(self, batch: Dict[str, torch.Tensor], state, rows: int) -> torch.Tensor:
        """Scores ``[rows, num_items]`` from :meth:`score_candidates` over ``item_chunk_size`` items at a time,
        for models whose score depends on the (user, item) pair (no fixed item vectors: KGCN, RippleNet, KTUP)."""
        n, chunk = self.meta.num_items, int(self.cfg("item_chunk_size"))
        ids = torch.arange(n, device=self.device)
        return torch.cat([self.score_candidates(batch, state, ids[s:s + chunk].expand(rows, -1))
                          for s in range(0, n, chunk)], dim=1)

    def rec_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The ``loss`` key on the towers' scores (:meth:`Recommender.training_loss`), plus ``reg_weight``
        times the norm of the batch's user, positive and (dataset-drawn) negative item vectors."""
        loss = Recommender.training_loss(self, batch)
        reg = float(self.cfg("reg_weight", 0.0))
        if reg:
            tensors = [self.encode_query(batch), self.encode_items(batch[self.meta.iid_field])]
            if "neg_item" in batch:
                tensors.append(self.encode_items(batch["neg_item"]))
            loss = loss + reg * embedding_norm(*tensors)
        return loss

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """``rec_loss + kg_weight * kg_loss`` of the batch and a fresh KG batch (the joint schedule; the
        alternating one steps on the two terms separately in :meth:`training_step`)."""
        return self.rec_loss(batch) + float(self.cfg("kg_weight")) * self.kg_loss(self.sample_kg_batch())

    def training_step(self, batch, batch_idx):
        if self.automatic_optimization:
            return super().training_step(batch, batch_idx)
        opt = self.optimizers()
        total = self._manual_step(opt, self.rec_loss(batch))
        if self.cfg("kg_schedule") == "alternating":
            total = total + self._manual_step(opt, float(self.cfg("kg_weight")) * self.kg_loss(self.sample_kg_batch()))
        self._loss_sum += float(total)
        self._loss_count += 1
        self.log("train/loss", total, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=self._batch_size(batch), sync_dist=True)
        return None

    def _manual_step(self, opt, loss: torch.Tensor) -> torch.Tensor:
        """One optimizer step on ``loss`` (manual optimisation); returns it detached."""
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        return loss.detach()

    def on_train_batch_end(self, outputs, batch, batch_idx):
        super().on_train_batch_end(outputs, batch, batch_idx)
        if (self.cfg("kg_schedule") == "epochs" and self._trainer is not None
                and batch_idx + 1 == self.trainer.num_training_batches):
            self.kg_epoch()  # after the epoch's last interaction batch, before validation

    def on_train_epoch_end(self):
        if not self.automatic_optimization:  # manual optimisation: schedulers are stepped here, once per epoch
            schedulers = self.lr_schedulers()
            for sched in (schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []):
                if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    value = self.trainer.callback_metrics.get(self.monitor)
                    if value is not None:
                        sched.step(value)
                else:
                    sched.step()
        super().on_train_epoch_end()

    # ---- resuming: the KG sampler continues where it stopped --------------------------------------
    def on_save_checkpoint(self, checkpoint) -> None:
        super().on_save_checkpoint(checkpoint)
        if getattr(self, "_kg_generator", None) is not None:
            checkpoint["kg_generator_state"] = self._kg_generator.get_state()

    def on_load_checkpoint(self, checkpoint) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("kg_generator_state")
        if state is not None and getattr(self, "_kg_generator", None) is not None:
            self._kg_generator.set_state(state)
