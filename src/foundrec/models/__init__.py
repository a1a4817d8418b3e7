"""Recommenders behind one interface: fit / score / save / load."""

from foundrec.models.base import Recommender, UserBatch
from foundrec.models.bpr import BPR
from foundrec.models.itemknn import ItemKNN
from foundrec.models.mlp import MLPRecommender
from foundrec.models.popularity import Popularity
from foundrec.models.sequential import HSTURecommender, SequentialRecommender

MODELS: dict[str, type[Recommender]] = {
    m.name: m for m in (Popularity, ItemKNN, BPR, MLPRecommender, SequentialRecommender, HSTURecommender)
}

__all__ = ["MODELS", "Recommender", "UserBatch"]
