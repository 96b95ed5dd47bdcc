"""mlGeNN's ``ml_genn.utils`` helpers that inference needs (see :mod:`distsnn.utils.data`)."""
