"""``python -m distsnn ...``: the same as the ``distsnn`` command."""
from distsnn.cli.app import main

main()
