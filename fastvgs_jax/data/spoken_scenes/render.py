"""Renders a scene description to an RGB image with numpy (supersampled for smooth edges)."""

from __future__ import annotations

import numpy as np

from fastvgs_jax.data.spoken_scenes.scenes import COLOUR_RGB, Scene, SceneObject

_SUPERSAMPLE = 3


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test in object coordinates: u, v in units of the object radius, v downwards."""
    r = np.hypot(u, v)
    if shape == "circle":
        return r <= 1.0
    if shape == "ring":
        return (r <= 1.0) & (r >= 0.55)
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "cross":
        return ((np.abs(u) <= 0.32) & (np.abs(v) <= 1.0)) | (
            (np.abs(v) <= 0.32) & (np.abs(u) <= 1.0)
        )
    if shape == "triangle":  # apex up
        return (v <= 0.75) & (v >= -1.0 + 1.75 * np.abs(u) / 1.0) & (np.abs(u) <= 1.0)
    if shape == "hexagon":
        return (np.abs(v) <= 0.866) & (np.abs(v) * 0.577 + np.abs(u) <= 1.0)
    if shape == "star":
        theta = np.arctan2(v, u) + np.pi / 2
        # A five-pointed star as a radius that oscillates with angle.
        boundary = 0.5 + 0.5 * np.abs(np.cos(2.5 * theta)) ** 3
        return r <= boundary
    if shape == "heart":
        x, y = u * 1.1, -v * 1.1 + 0.2  # y up for the implicit curve
        return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0
    raise ValueError(f"cannot draw unknown shape {shape!r}")


def _pattern_mask(pattern: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Where the pattern's second tone shows, in object coordinates."""
    if pattern == "plain":
        return np.zeros_like(u, dtype=bool)
    if pattern == "striped":
        return np.sin(u * np.pi * 3.0) > 0.0
    if pattern == "dotted":
        return np.hypot((u * 2.5) % 1.0 - 0.5, (v * 2.5) % 1.0 - 0.5) < 0.22
    if pattern == "checked":
        return (np.floor(u * 2.0) + np.floor(v * 2.0)) % 2 == 0
    raise ValueError(f"cannot draw unknown pattern {pattern!r}")


def _second_tone(rgb: np.ndarray) -> np.ndarray:
    """A contrasting tone of the same hue: darker for light colours, lighter for dark ones."""
    if rgb.mean() > 140:
        return rgb * 0.45
    return rgb + (255 - rgb) * 0.55


def render_scene(scene: Scene, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draws ``scene`` as a ``[size, size, 3]`` uint8 image.

    ``rng`` adds small per-object colour jitter and pixel noise, as cameras would.
    """
    n = size * _SUPERSAMPLE
    coords = (np.arange(n) + 0.5) / n
    xs, ys = np.meshgrid(coords, coords)
    canvas = np.empty((n, n, 3), np.float32)
    canvas[...] = np.asarray(scene.background, np.float32)
    for obj in scene.objects:
        _draw(canvas, obj, xs, ys, rng)
    image = canvas.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE, 3).mean(axis=(1, 3))
    image += rng.normal(0.0, 2.0, size=image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _draw(canvas: np.ndarray, obj: SceneObject, xs, ys, rng: np.random.Generator) -> None:
    u = (xs - obj.x) / obj.radius
    v = (ys - obj.y) / obj.radius
    inside = _shape_mask(obj.shape, u, v)
    base = np.asarray(COLOUR_RGB[obj.colour], np.float32) + rng.normal(0.0, 8.0, size=3)
    base = np.clip(base, 0, 255)
    tone = _pattern_mask(obj.pattern, u, v)
    canvas[inside & ~tone] = base
    canvas[inside & tone] = _second_tone(base)
