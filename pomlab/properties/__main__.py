"""``python -m pomlab.properties MODULE:FACTORY [--dim 64] [--quick]`` (see cli.py)."""
from .cli import main

raise SystemExit(main())
