"""The training options every feature model accepts (``family_options``): their help, types, checks, the
loss options' neutral values and the calibration of down-sampled negatives."""
import math
from typing import Any, Mapping, Tuple

from recstudio.model.module.field_embedding import AUTO_DIM_CAP
from recstudio.utils.errors import ConfigError
from recstudio.utils.options import NUMBER, Option

#: key of a per-field dict (embed_dim, embed_l2) giving the value of the fields it does not name
DEFAULT_ENTRY = "default"

FEATURE_HELP = {
    "embed_dim": "size of the field embeddings: an int (every field), a dict field -> int or 'auto' (with an "
                 f"optional '{DEFAULT_ENTRY}' entry for the other fields), or 'auto' (6 * vocabulary^0.25, at most "
                 f"{AUTO_DIM_CAP}); unequal sizes are projected to the largest one",
    "feature_fields": "fields the model uses (null: all): user id, item id, user / item feature fields, "
                      "context (interaction) fields; a clash of names is resolved as user_<name> / item_<name>",
    "label_field": "0/1 interaction column holding the label (null: rating >= label_threshold, else the "
                   "interactions' 'label' column)",
    "label_threshold": "a row is a click (label 1) when its rating >= this value (null: use label_field or "
                       "the 'label' column)",
    "loss": "training loss, a pointwise one (pointwise_bce)",
    "embed_reg": "L2 penalty embed_reg / 2 * ||E||^2 over every field embedding table and first-order weight, "
                 "added to each batch's loss (FuxiCTR's embedding_regularizer; 0: none)",
    "pos_weight": "weight of the positive rows' term of the BCE loss (> 0; 1: unweighted); predictions are not "
                  "corrected for it (their odds grow about pos_weight-fold)",
    "neg_sample_rate": "keep each negative training row with this probability (0 < r <= 1; the draw is fixed by "
                       "the seed); predictions and evaluation use calibrated probabilities p = q / (q + (1 - q) / r)",
    "embed_l2": "L2 on the embedding rows each batch reads: a number, or a dict field -> weight (with an optional "
                f"'{DEFAULT_ENTRY}' entry; unnamed fields 0); per field weight / 2 * the batch mean of the rows' "
                "squared norms (tables and first-order weights); 0: none",
}

#: options every feature model accepts without listing them in its YAML (``family_options``); a YAML
#: ``model`` section may set their defaults
FEATURE_OPTIONS = {
    "embed_dim": Option(10, (int, float, str, dict), FEATURE_HELP["embed_dim"]),
    "pos_weight": Option(1.0, NUMBER, FEATURE_HELP["pos_weight"]),
    "neg_sample_rate": Option(1.0, NUMBER, FEATURE_HELP["neg_sample_rate"]),
    "embed_l2": Option(0.0, (int, float, dict), FEATURE_HELP["embed_l2"]),
}

#: the training options that only a model training through ``FeatureRecommender.training_loss`` applies,
#: with their neutral values
LOSS_OPTIONS = {"pos_weight": 1.0, "neg_sample_rate": 1.0, "embed_l2": 0.0}


def _is_set(key: str, value: Any) -> bool:
    """Whether a :data:`LOSS_OPTIONS` value differs from its neutral one (a dict: any entry)."""
    values = value.values() if isinstance(value, dict) else [value]
    return any(v != LOSS_OPTIONS[key] for v in values)


def calibrate(q, rate: float):
    """Click probability ``p = q / (q + (1 - q) / rate)`` of a model that predicts ``q`` on data whose
    negatives were kept with probability ``rate`` (He et al. 2014, "Practical Lessons from Predicting Clicks
    on Ads at Facebook", section 6.2); in logits: ``logit(p) = logit(q) + log(rate)``.

    Example:
        >>> round(calibrate(0.5, 0.1), 4)     # 1:1 odds on 10%-sampled negatives are 1:10
        0.0909
    """
    return q / (q + (1 - q) / rate)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_feature_options(cfg: Mapping[str, Any]) -> None:
    """Values of :data:`FEATURE_OPTIONS` (their types are checked by the config layer).

    Raises:
        ConfigError: naming the key, the value and what is allowed.
    """
    w = cfg.get("pos_weight", 1.0)
    if not _number(w) or w <= 0:
        raise ConfigError(f"pos_weight must be a number > 0 (1: unweighted BCE), got {w!r}.")
    r = cfg.get("neg_sample_rate", 1.0)
    if not _number(r) or not 0 < r <= 1:
        raise ConfigError(f"neg_sample_rate must be in (0, 1] (the probability of keeping a negative training row; "
                          f"1: keep all), got {r!r}.")
    dim = cfg.get("embed_dim")
    if isinstance(dim, float) and dim.is_integer():  # 16.0 (e.g. from a tuner) is 16
        dim = cfg["embed_dim"] = int(dim)
    allowed = (f"an int >= 1, 'auto', or a dict field -> (int >= 1 or 'auto') with an optional "
               f"'{DEFAULT_ENTRY}' entry")
    entries = dim.items() if isinstance(dim, dict) else [(None, dim)]
    for key, d in entries:
        if not ((isinstance(d, int) and not isinstance(d, bool) and d >= 1) or d == "auto") \
                or (key is not None and not isinstance(key, str)):
            where = "embed_dim" if key is None else f"embed_dim[{key!r}]"
            raise ConfigError(f"{where} must be {allowed}; got {d!r}.")
    if isinstance(dim, dict) and not dim:
        raise ConfigError(f"embed_dim is an empty dict; it must be {allowed}.")
    l2 = cfg.get("embed_l2", 0.0)
    entries = l2.items() if isinstance(l2, dict) else [(None, l2)]
    for key, v in entries:
        if not _number(v) or v < 0 or (key is not None and not isinstance(key, str)):
            where = "embed_l2" if key is None else f"embed_l2[{key!r}]"
            raise ConfigError(f"{where} must be a number >= 0 (or embed_l2 a dict field -> number >= 0 with an "
                              f"optional '{DEFAULT_ENTRY}' entry); got {v!r}.")


def _applied_loss_options(cls, base) -> Tuple[str, ...]:
    """The :data:`LOSS_OPTIONS` a model class's training applies: all when every ``training_loss`` between
    ``cls`` and ``base`` in the MRO calls ``super().training_loss`` (the base's loss trains), else those that
    the class overriding it declares in its ``applied_loss_options`` (none when it declares nothing)."""
    for klass in cls.__mro__:
        if klass is base:
            break
        fn = klass.__dict__.get("training_loss")
        if fn is None:
            continue
        if "applied_loss_options" in klass.__dict__:
            return tuple(klass.__dict__["applied_loss_options"])
        names = getattr(getattr(fn, "__code__", None), "co_names", ())
        if not ("super" in names and "training_loss" in names):
            return ()
    return tuple(LOSS_OPTIONS)
