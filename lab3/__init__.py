"""lab3: the Leukemia Classification lab (ResNet18/50/152 from scratch) as a small package."""

__version__ = "0.1.0"
