"""The `diagnostics` command line: the researcher's and administrator's face of the library.

One module per command, each with `add_parser(commands)` and `run(args) -> int`; `main` builds
the parser from them and turns the library's errors into the one-line contract
(docs/architecture.md, "Command line").
"""

from diagnostics.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
