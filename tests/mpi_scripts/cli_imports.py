"""Run the distsnn command line, then say which ML frameworks this rank imported.

Usage: cli_imports.py DISTSNN-ARGUMENTS... Every rank writes ``rank R: imported=...`` to
stderr when it exits (after the command, whatever its outcome).
"""
import atexit
import os
import sys

FRAMEWORKS = ("keras", "onnx", "onnxruntime", "tensorflow", "torch")


def report() -> None:
    rank = next((os.environ[v] for v in ("PMI_RANK", "OMPI_COMM_WORLD_RANK") if v in os.environ),
                "0")
    loaded = [m for m in FRAMEWORKS if m in sys.modules]
    sys.stderr.write(f"rank {rank}: imported={','.join(loaded) or 'none'}\n")
    sys.stderr.flush()


atexit.register(report)
from distsnn.cli import main  # noqa: E402

sys.argv = ["distsnn", *sys.argv[1:]]
main()
