"""fastvgs-jax: FaST-VGS+ (visually grounded + self-supervised speech) in JAX/Flax."""

__version__ = "0.1.0"
