"""Models: backbones (``lidarcl.models.backbones``), the contrastive loss library
(``lidarcl.models.losses``), the image encoders and teachers (``lidarcl.models.image``) and
the pretraining methods (``lidarcl.models.pretrainers``), the downstream segmentors
(``lidarcl.models.segmentors``) and detectors (``lidarcl.models.detectors``). Importing this
package registers them in ``lidarcl.registry.MODELS``."""
from lidarcl.models import backbones  # noqa: F401  (registers the backbones)
from lidarcl.models import detectors  # noqa: F401  (registers CenterPoint)
from lidarcl.models import image  # noqa: F401  (registers the image teacher)
from lidarcl.models import losses  # noqa: F401  (registers the losses)
from lidarcl.models import pretrainers  # noqa: F401  (registers the pretrainers)
from lidarcl.models import segmentors  # noqa: F401  (registers the segmentor)
