"""distsnn: evaluate spiking networks converted from Keras ANNs on many GPUs or CPU cores."""
__version__ = "0.1.0"
