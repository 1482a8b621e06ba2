"""`python -m itra ...` (and `torchrun -m itra ...`): the `itra` command line."""
from itra.cli import main

raise SystemExit(main())
