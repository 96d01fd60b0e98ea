"""``python -m scratchvae``: the same as the ``scratchvae`` command."""
from .cli import main

raise SystemExit(main())
