"""``python -m app`` starts Hearth, same as the ``hearth`` command."""

import sys

from app.main import main

sys.exit(main())
