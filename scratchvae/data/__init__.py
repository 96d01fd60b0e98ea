"""The images: digits, MNIST and Frey Face, their checksummed downloads, splits,
binarization and minibatches (``datasets``; the files themselves in ``download``)."""
from .datasets import DataSplits, batches, binarize, load_dataset
