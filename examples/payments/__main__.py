"""``python -m examples.payments``: the payments demo on a temporary SQLite file."""

from examples.payments.service import main

main()
