"""Networks by name (see space/models/registry.py): importing this package registers every
network below; `get_model(name, ...)` builds one.

- darts: the DARTS network of a genotype (space/darts/network.py's cells)
- resnet8 ... resnet110, resnet164: He et al.'s CIFAR ResNets (cifar_resnet.py)
- resnet18/34/50/101, vgg16, densenet100, densenet121: torchvision's, CIFAR stems (tv_cifar.py)
- e-vgg, s-vgg, sl-vgg, e-resnet, sl-resnet: ShaRDNet's shared-filter networks (shardnet.py)
- sl-resnet34, sl-resnet50: ShaRDNet's ImageNet variants (shardnet_imagenet.py)
- tv:<name>: any torchvision classification model, as torchvision defines it
"""

from space.models import (  # noqa: F401  (registers them)
    cifar_resnet,
    darts,
    shardnet,
    shardnet_imagenet,
    tv_cifar,
)
from space.models.registry import (
    TORCHVISION_PREFIX,
    ModelEntry,
    get_model,
    list_models,
    model_entry,
    register_model,
)

__all__ = ["TORCHVISION_PREFIX", "ModelEntry", "get_model", "list_models", "model_entry",
           "register_model"]
