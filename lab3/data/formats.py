"""The names the data formats fix, each written once: splits, table columns, file names, classes.

The course's Kaggle folder, the synthetic default that imitates it, and the code that reads either
take these from here, so a name cannot drift between the writer and the reader.
"""

from __future__ import annotations

SPLITS = ("train", "valid", "test")
COLUMNS = ["path", "label", "split", "subject", "id"]  # the layout table, whatever the layout

# The course layout: `Path,label` for the labelled splits, `Path` alone per depth's test CSV.
SPLIT_CSVS = {"train": "train.csv", "valid": "valid.csv"}
TEST_CSVS = {
    "resnet18": "resnet_18_test.csv",
    "resnet50": "resnet_50_test.csv",
    "resnet152": "resnet_152_test.csv",
}
TRUTH_CSV = "test_labels.csv"  # ID,label: the truth for local scoring (the synthetic set ships it)
METADATA_CSV = "metadata.csv"  # path,label,split,subject: written by `lab3 synth` (either kind)
RETINOPATHY_TRAIN_CSV = "train_img.csv"  # what marks the retinopathy layout

LEUKEMIA_CLASSES = ("normal (hem)", "blast (all)")
RETINOPATHY_CLASSES = ("0 none", "1 mild", "2 moderate", "3 severe", "4 proliferative")
