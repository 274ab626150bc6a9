"""ResNet-18/34/50/101/152 written for this lab, and a per-stage parameter/MAC summary."""

from lab3.models.resnet import (
    ARCHITECTURES,
    MODELS,
    BasicBlock,
    Bottleneck,
    ResNet,
    build_model,
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
    "MODELS",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "build_model",
    "conv1x1",
    "conv3x3",
    "count_macs",
    "format_summary",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "summary",
]
