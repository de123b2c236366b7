"""``python -m freedompay_async``: the same as the ``freedompay-async`` command."""

from .cli import main

raise SystemExit(main())
