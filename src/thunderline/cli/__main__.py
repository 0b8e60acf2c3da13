"""``python -m thunderline.cli``."""

from thunderline.cli import main

raise SystemExit(main())
