"""The data layer: raw releases -> prepared data sets -> views -> tf.data batches.

`prepared` (the on-disk format every stage reads), `ferplus`, `affectnet` and `demo` (writers of
that format), `occlusion` (the views), `pipeline` (the tf.data pipeline). Import the module you
need; nothing is imported here so that NumPy-only users never pay for TensorFlow.
"""
