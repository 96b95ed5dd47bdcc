"""The CLI pipeline on a Keras model: which ranks imported TensorFlow/Keras?

Usage: tf_imports.py MODEL NORM_DATA BUILD_DIR. Every rank prints one line.
"""
import sys

from distsnn.jobs.network_source import ConversionOptions, load_or_convert
from distsnn.parallel.communicator import MPICommunicator
from distsnn.utils.timings import Timings

comm = MPICommunicator()
options = ConversionOptions(method="data-norm", norm_data=sys.argv[2], timesteps=20,
                            build_dir=sys.argv[3])
network = load_or_convert(sys.argv[1], options, comm, Timings())
loaded = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
sys.stdout.write(f"rank {comm.rank}: populations={len(network.populations)} "
                 f"imported={','.join(loaded) or 'none'}\n")
sys.stdout.flush()
