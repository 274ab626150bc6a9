"""ResNet-18/34/50/101/152 written for this lab, a per-stage parameter/MAC summary, and (opt-in,
outside the course's rules) torchvision's classifiers by name and pretrained initial weights."""

from lab3.models.pretrained import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_model,
    check_model_name,
    initial_state,
    load_initial_state,
    torchvision_name,
)
from lab3.models.resnet import (
    ARCHITECTURES,
    MODEL_NAMES,
    MODELS,
    BasicBlock,
    Bottleneck,
    ResNet,
    conv1x1,
    conv3x3,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
)
from lab3.models.summary import count_macs, format_summary, summary

__all__ = [
    "ARCHITECTURES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODEL_NAMES",
    "MODELS",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "build_model",
    "check_model_name",
    "conv1x1",
    "conv3x3",
    "count_macs",
    "format_summary",
    "initial_state",
    "load_initial_state",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "summary",
    "torchvision_name",
]
