"""Models: backbones (``lidarcl.models.backbones``); pretrainers and heads arrive with their
issues. Importing this package registers them in ``lidarcl.registry.MODELS``."""
from lidarcl.models import backbones  # noqa: F401  (registers the backbones)
