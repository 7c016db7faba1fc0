"""Family bases: small bases that turn the model context into a family's inputs.

- :class:`SequentialRecommender` (:mod:`.sequential`): every position of a sequence trained at once, causal
  or cloze, with any loss and sampler (SASRec, GRU4Rec, BERT4Rec);
- :class:`GraphRecommender` (:mod:`.graph`): the normalised training adjacency, K-layer propagation, vectors
  cached per evaluation (LightGCN, NGCF);
- :class:`FeatureRecommender` (:mod:`.feature`): one embedding per field, a pointwise click task evaluated
  by auc / gauc / logloss, and full ranking on demand (FM, DeepFM);
- :class:`KnowledgeRecommender` (:mod:`.knowledge`): knowledge-graph triples beside the interactions,
  trained jointly or alternately, TransE / TransR blocks (CKE, KGAT);
- :class:`SocialRecommender` (:mod:`.social`): the normalised social adjacency, social regularisation and
  propagation (SocialMF, DiffNet).

Walk-throughs: ``docs/adding_a_model.md`` and ``docs/adding_a_model/<family>.md``.
"""
from recstudio.model.family.feature import FeatureRecommender
from recstudio.model.family.graph import GraphRecommender
from recstudio.model.family.knowledge import KnowledgeRecommender
from recstudio.model.family.sequential import SequentialRecommender
from recstudio.model.family.social import SocialRecommender

__all__ = ["SequentialRecommender", "GraphRecommender", "FeatureRecommender", "KnowledgeRecommender",
           "SocialRecommender"]
