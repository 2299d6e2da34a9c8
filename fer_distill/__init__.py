"""fer-distill: facial expression recognition under VR-headset occlusion.

Importing the package registers its custom Keras layers, so that
`keras.saving.load_model` can open any `.keras` file the package wrote.
"""
__version__ = "0.1.0"

from fer_distill import models  # noqa: E402,F401  (registers the custom Keras layers)
