"""``python -m distsnn.cli``: the command line."""
from distsnn.cli.app import main

main()
