"""Model definitions. Each model is built from one frozen config dataclass."""
