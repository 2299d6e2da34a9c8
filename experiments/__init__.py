"""The binaries (python -m experiments.NAME). Importing the package imports TensorFlow without
its CPU-machine start-up noise first (experiments/quiet.py)."""
from experiments import quiet

quiet.import_tensorflow()
