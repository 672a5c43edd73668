"""A pretrained conv image tower: the CPU demo's stand-in for FaST-VGS's frozen detector.

    python launch/pretrain_image_tower.py --preset small --out results/image_tower.msgpack

FaST-VGS never trains its image features: they come from a Faster R-CNN trained on Visual
Genome's objects and attributes and are read frozen. Trained from scratch instead, the demo's
conv tower was what held retrieval near chance: in the corpus probe at the demo's batch
(16 × 4 s), the scenes' ground-truth attributes as the image side gave 63 % test S→I R@10
after 182 steps and 89 % after 727, where pixels through a from-scratch CNN gave 21 % after
475 (benchmarks/corpus_difficulty_probe.py, --image_input).

So: render fresh scenes with the corpus's own scene sampler (its vocabulary and object counts,
a seed stream of their own, so no corpus image is among them), train ``ConvImageTower`` to
say which attributes each contains (``scenes.attribute_targets``; multi-label, sigmoid
cross-entropy; the tower's projection is the classifier), and save its convs. A run loads
them with ``image_tower_init`` and keeps them frozen with ``model.image.cnn_frozen``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from fastvgs_jax.data import audio as audio_lib
from fastvgs_jax.data.spoken_scenes import corpus, render, scenes
from fastvgs_jax.models import fastvgs, vgs
from fastvgs_jax.train import manifest

log = logging.getLogger(__name__)

FORMAT = "fastvgs_jax.image_tower/1"
# Distinguishes the tower's scene stream from every corpus split's (corpus._SPLIT_CODE).
_SCENE_STREAM = 7919
HELDOUT_SCENES = 512


class ImageTowerError(ValueError):
    """A tower file that is missing, unreadable, or does not fit the model."""


@dataclasses.dataclass(frozen=True)
class TowerSettings:
    """What determines a pretrained tower's bytes (saved beside it, checked on reuse)."""

    corpus_preset: str = "small"  # the scene sampler and image size it is trained for
    widths: tuple[int, ...] = (32, 64, 128, 256)  # model.image.cnn_widths
    steps: int = 1500
    batch_size: int = 64
    learning_rate: float = 3e-3
    num_scenes: int = 8000  # rendered once, sampled with replacement
    seed: int = 0

    @classmethod
    def from_config(
        cls, tower: ml_collections.ConfigDict, model: ml_collections.ConfigDict, preset: str
    ) -> TowerSettings:
        """From a study's ``image_tower`` section and its run's model config and corpus."""
        return cls(
            corpus_preset=preset,
            widths=tuple(int(w) for w in model.image.cnn_widths),
            steps=int(tower.steps),
            batch_size=int(tower.batch_size),
            learning_rate=float(tower.learning_rate),
            num_scenes=int(tower.num_scenes),
            seed=int(tower.seed),
        )

    def to_json_dict(self) -> dict:
        return {**dataclasses.asdict(self), "widths": list(self.widths)}


def labelled_scenes(preset: str, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` scenes drawn and rendered as the corpus ``preset`` draws its images.

    Returns:
      images [count, H, W, 3] float32, standardised as the input pipeline does, and targets
      [count, A] float32 attribute multi-hots (``scenes.attribute_targets``).
    """
    if preset not in corpus.PRESETS:
        raise ValueError(
            f"unknown corpus preset {preset!r}; expected one of {list(corpus.PRESETS)}"
        )
    settings = corpus.PRESETS[preset]
    vocabulary = settings.vocabulary()
    rng = np.random.default_rng([settings.seed, _SCENE_STREAM, seed])
    images, targets = [], []
    for _ in range(count):
        scene = scenes.sample_scene(
            rng, vocabulary, settings.min_objects, settings.max_objects, settings.repeat_probability
        )
        images.append(
            audio_lib.normalize_image(render.render_scene(scene, settings.image_size, rng))
        )
        targets.append(scenes.attribute_targets(scene, vocabulary))
    return np.stack(images), np.stack(targets)


def attribute_loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean sigmoid cross-entropy; logits, targets: [batch, attributes] → []."""
    return optax.sigmoid_binary_cross_entropy(logits, targets).mean()


def attribute_scores(logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Micro-F1 of the present attributes and the share of scenes with every attribute right
    (in %). Accuracy would say little: most attributes are absent from most scenes.

    Args:
      logits, targets: [scenes, attributes]; an attribute is predicted present at logit > 0.
    """
    predicted, present = np.asarray(logits) > 0, np.asarray(targets) > 0.5
    hits = float((predicted & present).sum())
    f1 = 2 * hits / max(1.0, float(predicted.sum() + present.sum()))
    return {
        "attribute_f1": 100.0 * f1,
        "scene_exact_match": 100.0 * float((predicted == present).all(axis=1).mean()),
    }


def prior_logits(train_targets: np.ndarray) -> np.ndarray:
    """[A] the log-odds of each attribute's training frequency: the best picture-blind guess."""
    rate = np.clip(train_targets.mean(axis=0), 1e-4, 1 - 1e-4)
    return np.log(rate / (1 - rate)).astype(np.float32)


def pretrain(settings: TowerSettings) -> tuple[dict, dict]:
    """Trains the tower; returns (its parameters, metrics): the last batch's loss, and on
    held-out scenes the loss, the picture-blind prior's loss, attribute F1 and exact match."""
    images, targets = labelled_scenes(settings.corpus_preset, settings.num_scenes, settings.seed)
    heldout_images, heldout_targets = labelled_scenes(
        settings.corpus_preset, HELDOUT_SCENES, settings.seed + 1_000_003
    )
    model = vgs.ConvImageTower(settings.widths, targets.shape[1])
    # The classifier starts from the prior: with most attributes absent from most scenes, a
    # zero-logit start spends its first few hundred steps learning only that.
    prior = prior_logits(targets)
    key = jax.random.key(settings.seed)
    # Plain arrays: the tower's parameters carry logical-axis boxes for the sharded model.
    params = flax.linen.meta.unbox(model.init(key, images[:1])["params"])
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, settings.learning_rate, max(1, settings.steps // 20), max(2, settings.steps)
    )
    tx = optax.adamw(schedule, weight_decay=1e-4)
    opt_state = tx.init(params)

    @jax.jit
    def train_step(params, opt_state, images, targets):
        def loss_fn(p):
            return attribute_loss(model.apply({"params": p}, images) + prior, targets)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    order = np.random.default_rng(settings.seed)
    loss = float("nan")
    for step in range(settings.steps):
        rows = order.integers(0, len(images), settings.batch_size)
        params, opt_state, loss = train_step(params, opt_state, images[rows], targets[rows])
        if (step + 1) % 250 == 0:
            log.info("image tower step %d/%d: loss %.4f", step + 1, settings.steps, float(loss))
    logits = jax.jit(lambda p, x: model.apply({"params": p}, x) + prior)(params, heldout_images)
    blind = np.broadcast_to(prior, heldout_targets.shape)
    metrics = {
        "final_loss": float(loss),
        "heldout_loss": float(attribute_loss(logits, heldout_targets)),
        "heldout_prior_loss": float(attribute_loss(blind, heldout_targets)),
        **attribute_scores(logits, heldout_targets),
    }
    return jax.device_get(params), metrics


def save(path: str, params: Mapping, settings: TowerSettings, metrics: Mapping) -> None:
    """Writes the tower atomically: a crash leaves the old file or none, never half of one."""
    meta = {"format": FORMAT, "settings": settings.to_json_dict(), "metrics": dict(metrics)}
    blob = flax.serialization.msgpack_serialize(
        {"meta": json.dumps(meta, sort_keys=True), "params": jax.tree.map(np.asarray, params)}
    )
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    partial = f"{path}.tmp{jax.process_index()}"  # hosts sharing a disk never share one
    with open(partial, "wb") as f:
        f.write(blob)
    os.replace(partial, path)


def load(path: str) -> tuple[dict, dict]:
    """(params, meta) of a saved tower.

    Raises:
      ImageTowerError: the file is missing or is not a tower this code wrote.
    """
    if not os.path.exists(path):
        raise ImageTowerError(f"image tower {path}: no such file")
    try:
        with open(path, "rb") as f:
            data = flax.serialization.msgpack_restore(f.read())
        meta = json.loads(data["meta"])
        params = data["params"]
    except Exception as error:  # msgpack, JSON and key errors alike: the file is unusable
        raise ImageTowerError(f"image tower {path} is unreadable or corrupt: {error}") from error
    if meta.get("format") != FORMAT:
        raise ImageTowerError(f"image tower {path}: format {meta.get('format')!r}, not {FORMAT}")
    return params, meta


def load_into(params: Mapping, path: str) -> dict:
    """``params`` (a model's) with the tower's convs and norms from ``path``.

    The projection is not taken: the tower's is its attribute classifier.

    Raises:
      ImageTowerError: unreadable file, a model without a conv tower, or a shape mismatch.
    """
    tower, _ = load(path)
    outer, inner = fastvgs.IMAGE_TOWER_PATH
    current = params.get(outer, {}).get(inner)
    if current is None:
        raise ImageTowerError(
            f"image_tower_init={path}: the model has no conv image tower (image.kind='cnn')"
        )
    layers = set(tower) - {"projection"}  # the tower's projection is its classifier
    if layers != set(current) - {"projection"}:
        raise ImageTowerError(
            f"image_tower_init={path}: its layers {sorted(layers)} are not the model's "
            f"{sorted(set(current) - {'projection'})}; image.cnn_widths differ"
        )
    merged = dict(current)
    for name in sorted(layers):
        layer = tower[name]
        mismatched = jax.tree.map(lambda a, b: np.shape(a) != np.shape(b), layer, current[name])
        if any(jax.tree.leaves(mismatched)):
            raise ImageTowerError(
                f"image_tower_init={path}: {name}'s shapes differ from the model's "
                "(image.cnn_widths differ)"
            )
        merged[name] = jax.tree.map(  # in the model's dtype and shards
            lambda new, old: jax.device_put(jnp.asarray(new, old.dtype), old.sharding),
            layer,
            current[name],
        )
    return {**params, outer: {**params[outer], inner: merged}}


def ensure_pretrained(path: str, settings: TowerSettings) -> dict:
    """The tower at ``path``, trained and saved first if absent; returns its metrics (keys
    sorted, so that a report written from them does not depend on which happened).

    Raises:
      ImageTowerError: a tower is there, trained with other settings (runs that loaded it
        would otherwise be mixed with runs that load a new one).
    """
    if os.path.exists(path):
        _, meta = load(path)
        changed = manifest.config_differences(meta["settings"], settings.to_json_dict())
        if changed:
            raise ImageTowerError(
                f"image tower {path} was trained with other settings ({', '.join(changed)} "
                "differ); delete it and the runs that loaded it, or pass another --config.out"
            )
        metrics = meta["metrics"]
    else:
        log.info("pretraining the image tower (%d steps) → %s", settings.steps, path)
        params, metrics = pretrain(settings)
        save(path, params, settings, metrics)
        log.info("image tower: %s", json.dumps(metrics))
    return dict(sorted(metrics.items()))  # one order, trained here or read back
