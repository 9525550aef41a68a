"""``python -m r1zero_analysis``: see :mod:`r1zero_analysis.cli`."""

from .cli import main

raise SystemExit(main())
