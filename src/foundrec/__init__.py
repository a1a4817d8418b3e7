"""foundrec: pretrained sequential models for recommendation, end to end."""

__version__ = "0.1.0"
