"""RaCT: Mult-VAE fine-tuned by a learned critic of its ranking quality (actor-critic)."""
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import EarlyStopping
from torch import nn

from recstudio.model.registry import register_model
from recstudio.model.zoo.general.multivae import MultiVAE
from recstudio.utils.errors import ConfigError


class _AfterPretrainingEarlyStopping(EarlyStopping):
    """Early stopping that starts counting at the actor-critic stage: the critic's pre-training cannot
    move the validation metric, and the actor's pre-training runs its configured epochs in full."""

    def __init__(self, first_epoch: int, **kwargs):
        super().__init__(**kwargs)
        self.first_epoch = first_epoch

    def _run_early_stopping_check(self, trainer) -> None:
        if trainer.current_epoch >= self.first_epoch:
            super()._run_early_stopping_check(trainer)


def ndcg_of_held_out(pred: torch.Tensor, held_out: torch.Tensor, seen: torch.Tensor, k: int) -> torch.Tensor:
    """Per-user NDCG@k of ``pred`` ``[B, I]`` against the binary ``held_out`` items, the ``seen`` (input)
    items excluded from the ranking; IDCG is floored at 0.1 (users without held-out items get 0)."""
    pred = pred.detach().masked_fill(seen, float("-inf"))
    k = min(k, pred.shape[1])
    idx = pred.topk(k, dim=1).indices
    disc = 1.0 / torch.log2(torch.arange(2, k + 2, device=pred.device, dtype=torch.float32))
    dcg = (held_out.gather(1, idx) * disc).sum(1)
    n = held_out.sum(1).clamp(max=k).long()
    idcg = torch.cat([disc.new_zeros(1), disc.cumsum(0)])[n]
    return dcg / idcg.clamp(min=0.1)


@register_model("RaCT", category="general",
                paper="S. Lobel, C. Li, J. Gao, L. Carin. RaCT: Toward Amortized Ranking-Critical Training for "
                      "Collaborative Filtering. ICLR 2020.")
class RaCT(MultiVAE):
    """RaCT (Lobel et al., ICLR 2020): an actor (Mult-VAE) and a critic that learns to predict the actor's
    NDCG from the actor's loss, then trains the actor to maximise the predicted NDCG.

    Three stages in one run, by epoch: (1) ``actor_epochs`` of Mult-VAE pre-training (the annealed ELBO of
    :class:`MultiVAE`, here with ``latent_dim`` 128); (2) ``critic_epochs`` of critic pre-training, the actor
    frozen: for each user the critic ``c`` (BatchNorm, MLP ``critic_layers`` with ReLU, sigmoid output)
    reads ``[number of input items kept by the dropout, number dropped, the user's actor loss]`` and
    regresses ``NDCG@metrics_k`` of the actor's ranking of the *dropped* items (the kept ones masked)::

        critic loss = (c(n_kept, n_dropped, L_actor) - NDCG@k)^2

    (3) actor-critic training: per batch one critic update as in (2), then one actor update on
    ``-c(n_kept, n_dropped, L_actor)`` (the critic fixed; the gradient reaches the actor through its
    loss). Early stopping (patience ``early_stop_patience``) counts from stage (3) on; the best
    validation checkpoint of the whole run is kept, so a fine-tuning that does not help leaves the
    pre-trained actor. Scoring is the actor's (Mult-VAE item tower, exact ANN).

    Departures: RecBole 1.2.1 runs the stages as three separate runs (``train_stage``, ``pre_model_path``)
    of ``pretrain_epochs`` 150 each; here one run with ``actor_epochs`` 150 and ``critic_epochs`` 50. The
    actor is this library's :class:`MultiVAE` (N(0, I) reparameterisation noise, plain inverted dropout);
    RecBole's RaCT draws noise with std 0.01 and multiplies the dropped-out input by ``1 - dropout``.
    β counts every optimizer update (actor and critic). Manual optimisation (two optimizers):
    ``gradient_clip`` and ``scheduler`` are refused.

    Args (config keys): those of :class:`MultiVAE` and ``critic_layers``, ``metrics_k``, ``actor_epochs``,
    ``critic_epochs``; defaults in ``ract.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="RaCT", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **MultiVAE.option_help,
        "critic_layers": "hidden sizes of the critic MLP (RecBole: [100, 100, 10])",
        "metrics_k": "the critic regresses NDCG@metrics_k (RecBole: 100)",
        "actor_epochs": "epochs of actor (Mult-VAE) pre-training (RecBole: pretrain_epochs 150)",
        "critic_epochs": "epochs of critic pre-training after it, the actor frozen",
    }

    def __init__(self, config=None, dataset_config=None, **overrides):
        super().__init__(config, dataset_config, **overrides)
        c = self.config
        if c["gradient_clip"] is not None or c["scheduler"] is not None:
            raise ConfigError("RaCT alternates two optimizers by hand (manual optimisation), where Lightning "
                              "cannot clip gradients or step a scheduler; remove gradient_clip and scheduler.")
        if c["actor_epochs"] < 0 or c["critic_epochs"] < 0 or c["metrics_k"] < 1:
            raise ConfigError("RaCT needs actor_epochs >= 0, critic_epochs >= 0 and metrics_k >= 1.")
        if not list(c["critic_layers"]) or min(c["critic_layers"]) < 1:
            raise ConfigError(f"RaCT critic_layers must be positive sizes, got {c['critic_layers']}.")
        self.automatic_optimization = False

    def build_blocks(self) -> None:
        super().build_blocks()
        dims = [3, *self.cfg("critic_layers"), 1]
        layers = [nn.BatchNorm1d(3)]
        for i in range(len(dims) - 1):
            layers += [nn.Linear(dims[i], dims[i + 1]), nn.ReLU() if i < len(dims) - 2 else nn.Sigmoid()]
        self.critic = nn.Sequential(*layers)
        for m in self.critic.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    # ---- the actor's per-user loss and the critic ----------------------------------------------
    def actor_forward(self, batch: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                        torch.Tensor]:
        """``(per-user actor loss [B], logits [B, I], kept [B, I] bool, dropped [B, I] float)``."""
        q = self.query_encoder
        x = q.input(batch)
        h = q.dropout(F.normalize(x, dim=1))
        mu, logvar = q.encoder(h).chunk(2, dim=-1)
        logits = self.score_func.score_all(q.decode_hidden(q.sample(mu, logvar)), self.item_vectors())
        logits[:, 0] = float("-inf")
        nll = -(x[:, 1:] * torch.log_softmax(logits, dim=-1)[:, 1:]).sum(-1)
        kl = 0.5 * (torch.exp(logvar) + mu ** 2 - 1.0 - logvar).sum(-1)
        kept = h > 0
        dropped = ((x > 0) & ~kept).float()
        return nll + self.kl_weight(self.global_step) * kl, logits, kept, dropped

    def critic_score(self, actor_loss: torch.Tensor, kept: torch.Tensor, dropped: torch.Tensor) -> torch.Tensor:
        feats = torch.stack([kept.sum(1).float(), dropped.sum(1), actor_loss], dim=1)
        return self.critic(feats).squeeze(-1)

    def critic_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            actor_loss, logits, kept, dropped = self.actor_forward(batch)
            target = ndcg_of_held_out(logits, dropped, kept, int(self.cfg("metrics_k")))
        return ((self.critic_score(actor_loss, kept, dropped) - target) ** 2).mean()

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The actor's ELBO plus the critic's regression loss (every parameter gets a gradient)."""
        actor_loss, logits, kept, dropped = self.actor_forward(batch)
        target = ndcg_of_held_out(logits, dropped, kept, int(self.cfg("metrics_k")))
        critic = ((self.critic_score(actor_loss.detach(), kept, dropped) - target) ** 2).mean()
        return actor_loss.mean() + critic

    # ---- training: the three stages --------------------------------------------------------------
    def stage(self) -> str:
        e, a = self.current_epoch, int(self.cfg("actor_epochs"))
        return "actor" if e < a else "critic" if e < a + int(self.cfg("critic_epochs")) else "actor_critic"

    def configure_optimizers(self):
        from recstudio.model.optim import OPTIMIZERS
        build = OPTIMIZERS.get(self.config["optimizer"])
        critic = {id(p) for p in self.critic.parameters()}
        actor = [p for p in self.parameters() if p.requires_grad and id(p) not in critic]
        return [build(actor, self.config), build(list(self.critic.parameters()), self.config)]

    def configure_callbacks(self):
        first = int(self.cfg("actor_epochs")) + int(self.cfg("critic_epochs"))
        return [_AfterPretrainingEarlyStopping(first, monitor=self.monitor, mode=self.monitor_mode,
                                               patience=self.config["early_stop_patience"],
                                               check_on_train_epoch_end=False)]

    def training_step(self, batch, batch_idx):
        actor_opt, critic_opt = self.optimizers()
        stage = self.stage()
        if stage == "actor":
            loss = self.actor_forward(batch)[0].mean()
            actor_opt.zero_grad()
            self.manual_backward(loss)
            actor_opt.step()
        else:
            loss = self.critic_loss(batch)
            critic_opt.zero_grad()
            self.manual_backward(loss)
            critic_opt.step()
            if stage == "actor_critic":
                actor_loss, _, kept, dropped = self.actor_forward(batch)
                loss = -self.critic_score(actor_loss, kept, dropped).mean()
                actor_opt.zero_grad()
                self.manual_backward(loss)
                actor_opt.step()
        loss = loss.detach()
        self._loss_sum += float(loss)
        self._loss_count += 1
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=self._batch_size(batch), sync_dist=True)
        return None
