"""The 8 expression classes, in the order every file and model of the package uses.

FERPlus's vote columns come in this order, so FER+ labels are vote-column indices; AffectNet's
expression codes are mapped onto it by name (see `affectnet.py`). One order everywhere means a
model trained on one data set reads the other's labels without a translation table.
"""
CLASS_NAMES = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
)
NUM_CLASSES = len(CLASS_NAMES)
