"""``python -m fasm_es.cli``: the same as the ``fasm-es`` script."""

from fasm_es.cli import main

raise SystemExit(main())
