"""The ``scratchvae`` command: train, evaluate, plot, gradcheck, data, exercises, bench, reproduce."""
from .main import _expected_errors, build_parser, main
