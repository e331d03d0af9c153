"""Models fitted on what the engine hands back: buy-till-you-die and spend models."""

from segmentum.models.btyd import BetaGeo, GammaGamma, ModifiedBetaGeo, ParetoNBD

__all__ = ["BetaGeo", "GammaGamma", "ModifiedBetaGeo", "ParetoNBD"]
