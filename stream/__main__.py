"""``python -m stream`` is ``streamlearn``."""

from stream.cli import main

raise SystemExit(main())
