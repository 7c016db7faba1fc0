"""Base classes of every model: Recommender -> TowerFree / ItemTower / TwoTower."""
from recstudio.model.base.itemtower import ItemTowerRecommender, TwoTowerRecommender
from recstudio.model.base.recommender import Recommender

__all__ = ["Recommender", "ItemTowerRecommender", "TwoTowerRecommender"]
