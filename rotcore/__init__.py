"""rotcore: the library behind rotbook, a reproducible report on how neural networks learn rotation."""

__version__ = "0.1.0"
