"""Fusion of trained recommenders: score and rank combiners, stacking; each one is itself a Recommender."""

from foundrec.fusion.base import Fusion
from foundrec.fusion.candidates import Candidates, TopLists, align, collect_top_lists
from foundrec.fusion.members import Member, load_member, load_model
from foundrec.fusion.rank_fusion import BordaCount, MajorityVoting, ReciprocalRankFusion
from foundrec.fusion.stacking import StackingFusion
from foundrec.fusion.targets import candidate_metrics, candidate_per_user
from foundrec.fusion.weighted import WeightedScoreFusion

FUSIONS: dict[str, type[Fusion]] = {
    f.name: f for f in (WeightedScoreFusion, ReciprocalRankFusion, BordaCount, MajorityVoting, StackingFusion)
}

__all__ = [
    "FUSIONS",
    "BordaCount",
    "Candidates",
    "Fusion",
    "MajorityVoting",
    "Member",
    "ReciprocalRankFusion",
    "StackingFusion",
    "TopLists",
    "WeightedScoreFusion",
    "align",
    "candidate_metrics",
    "candidate_per_user",
    "collect_top_lists",
    "load_member",
    "load_model",
]
