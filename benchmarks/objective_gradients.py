"""How hard each objective pulls on the shared speech encoder at init, one JSON line.

    python benchmarks/objective_gradients.py                  # the demo study's VGS+ model
    python benchmarks/objective_gradients.py --preset=quick --batches=2

VGS+ adds α·coarse and (1 − α)·SSL, so α only means "equal shares" when the two losses'
gradients on the parameters they share are of similar size. This measures them: on real
training batches of the built corpus (built first if absent) and freshly initialised
parameters, the gradient of the coarse loss alone and of the SSL loss alone, each with
weight 1, on the speech encoder (the only parameters both reach).

Fields: coarse_norm and ssl_norm (mean over batches of the global L2 norm over the speech
encoder's parameters), ratio (coarse / SSL), cosine (between the two gradients),
balancing_alpha (the α at which α·coarse_norm = (1 − α)·ssl_norm), the preset's
vgsplus_alpha, batches, batch.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configs import study as study_configs  # noqa: E402
from fastvgs_jax import study  # noqa: E402
from fastvgs_jax.data import build, pipelines  # noqa: E402
from fastvgs_jax.models import fastvgs  # noqa: E402
from fastvgs_jax.train import loop, objectives, reporting  # noqa: E402

flags.DEFINE_enum("preset", "demo", study_configs.PRESETS, "Study preset whose VGS+ to measure.")
flags.DEFINE_integer("batches", 4, "Training batches to average over.")
flags.DEFINE_integer("seed", 0, "Parameter, mask and data seed.")
FLAGS = flags.FLAGS


def _tree_dot(a, b) -> float:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return float(sum(jnp.vdot(x, y) for x, y in pairs))


def main(_):
    reporting.quiet_library_logs()
    settings = study_configs.get_config(FLAGS.preset)
    config = study.model_config(settings, "vgsplus", FLAGS.seed)
    loop.prepare(config)  # validated, data frames aligned with the model, as the trainer does
    build.ensure_built(config.data.data_dir, config.data.preset, seed=config.data.corpus_seed)
    model = fastvgs.FaSTVGSPlus(config.model)
    variables = fastvgs.init_variables(config.model, jax.random.key(FLAGS.seed))
    stream = iter(pipelines.mixed_stream_from_config(config.data, {"audio_image": 1.0}))

    @jax.jit
    def encoder_gradients(batch, key):
        def term(params, coarse_w, ssl_w):
            loss, _ = objectives.joint_loss(
                model, params, variables["batch_stats"], batch, key, 0, coarse_w, ssl_w
            )
            return loss

        coarse = jax.grad(term)(variables["params"], 1.0, 0.0)["speech_encoder"]
        ssl = jax.grad(term)(variables["params"], 0.0, 1.0)["speech_encoder"]
        return coarse, ssl

    coarse_norms, ssl_norms, cosines = [], [], []
    for k in range(FLAGS.batches):
        raw = next(stream)
        batch = {key: jnp.asarray(raw[key]) for key in ("audio", "frame_mask", "image", "image_id")}
        coarse, ssl = encoder_gradients(batch, jax.random.key(1000 + k))
        c, s = np.sqrt(_tree_dot(coarse, coarse)), np.sqrt(_tree_dot(ssl, ssl))
        coarse_norms.append(c)
        ssl_norms.append(s)
        cosines.append(_tree_dot(coarse, ssl) / (c * s))
    c, s = float(np.mean(coarse_norms)), float(np.mean(ssl_norms))
    print(
        json.dumps(
            {
                "benchmark": "objective_gradients",
                "preset": FLAGS.preset,
                "coarse_norm": round(c, 4),
                "ssl_norm": round(s, 4),
                "ratio": round(c / s, 2),
                "cosine": round(float(np.mean(cosines)), 4),
                "balancing_alpha": round(s / (c + s), 3),
                "vgsplus_alpha": settings.vgsplus_alpha,
                "coarse_loss": config.model.coarse.loss,
                "batches": FLAGS.batches,
                "batch": list(batch["audio"].shape),
            }
        )
    )


if __name__ == "__main__":
    app.run(main)
