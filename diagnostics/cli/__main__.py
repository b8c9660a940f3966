"""`python -m diagnostics.cli`: the same as the `diagnostics` command."""

import sys

from diagnostics.cli.main import main

sys.exit(main())
