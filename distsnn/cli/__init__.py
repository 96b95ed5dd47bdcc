"""The ``distsnn`` command line (console script ``distsnn = "distsnn.cli:main"``): the last
stage. :mod:`distsnn.cli.app` parses the commands; the modules beside it present results
(tables, plots, JSON), describe network files, check the installation and run the demo."""
from distsnn.cli.app import app, main

__all__ = ["app", "main"]
