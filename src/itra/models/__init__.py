"""Models: each one is a `Classifier(extractor, head)`."""
from itra.models.classifier import Classifier

__all__ = ["Classifier"]
