"""``python -m scratchvae.experiments.bench``: the command, and how it starts its own child
processes (the memory run, and the run without OPENBLAS_CORETYPE)."""
from . import main

raise SystemExit(main())
