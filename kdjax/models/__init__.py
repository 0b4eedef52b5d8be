"""Model zoo. Importing this package registers every architecture (one module per family)."""

from kdjax.models.registry import get_model, list_models, register_model  # noqa: F401
from kdjax.models import convnet  # noqa: F401
from kdjax.models import resnet  # noqa: F401
from kdjax.models import pplcnet  # noqa: F401
from kdjax.models import resnet_cifar  # noqa: F401
from kdjax.models import wrn  # noqa: F401
from kdjax.models import vgg_cifar  # noqa: F401
from kdjax.models import mobilenetv2  # noqa: F401
from kdjax.models import shufflenet  # noqa: F401
from kdjax.models import mobilenetv3  # noqa: F401
from kdjax.models import vit  # noqa: F401
