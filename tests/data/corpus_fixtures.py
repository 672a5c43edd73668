"""The tests' tiny corpora: fastvgs_jax.data.corpora.samples, under the name the tests use."""

from fastvgs_jax.data.corpora.samples import *  # noqa: F403
