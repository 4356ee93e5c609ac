"""``python -m pomlab.properties MODULE:FACTORY [--dim 64] [--quick]`` (see cli.py)."""
import sys

from .cli import main

sys.exit(main())
