"""`python -m personalization ...`: see personalization.cli."""

from personalization.cli import main

raise SystemExit(main())
