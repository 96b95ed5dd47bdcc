"""Quiet third-party output: TensorFlow's C++ start-up lines, GeNN's ``make`` output.

Those libraries write straight to the process's file descriptors 1 and 2 (from C++ or from a
``make`` child process), so Python's logging cannot filter them. :func:`quiet_output`
redirects both descriptors into a temporary file around such a call and throws the text
away when the call succeeds; when it raises, the text is written to stderr first, so a real
compiler or import error is still shown in full. ``distsnn --verbose`` (or
``DISTSNN_VERBOSE=1``, which child processes and MPI ranks inherit) shows everything.
"""
from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from typing import Iterator

VERBOSE_ENV = "DISTSNN_VERBOSE"


def verbose() -> bool:
    """True when third-party output is to be shown as it comes."""
    return os.environ.get(VERBOSE_ENV, "").strip() not in ("", "0")


def set_verbose(on: bool) -> None:
    """Show (or hide) third-party output here and in every process started from here."""
    os.environ[VERBOSE_ENV] = "1" if on else "0"


@contextmanager
def quiet_output(what: str) -> Iterator[None]:
    """Hide what the block writes to descriptors 1 and 2 unless it raises (or verbose)."""
    if verbose():
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(1), os.dup(2)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, original in zip((1, 2), saved):
                os.dup2(original, fd)
                os.close(original)
            if failed:
                sink.seek(0)
                text = sink.read().decode(errors="replace")
                if text.strip():
                    sys.stderr.write(f"[output of {what}]\n{text.rstrip()}\n")
                    sys.stderr.flush()
