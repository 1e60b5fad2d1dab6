"""Models: backbones (``lidarcl.models.backbones``) and the contrastive loss library
(``lidarcl.models.losses``); pretrainers and heads arrive with their issues. Importing this
package registers them in ``lidarcl.registry.MODELS``."""
from lidarcl.models import backbones  # noqa: F401  (registers the backbones)
from lidarcl.models import losses  # noqa: F401  (registers the losses)
