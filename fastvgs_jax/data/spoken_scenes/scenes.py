"""Scene descriptions: the single source of truth that both the renderer and the captioner read.

A scene is a few objects on a plain background. Each object has a shape, a colour, a size, a
surface pattern and a position in the unit square (y grows downwards, as in images). Spatial
relations are derived from positions, never stored, so they cannot disagree with the picture.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import numpy as np

SHAPES = ("circle", "square", "triangle", "star", "heart", "diamond", "cross", "hexagon", "ring")
COLOURS = (
    "red",
    "green",
    "blue",
    "yellow",
    "purple",
    "orange",
    "pink",
    "brown",
    "white",
    "black",
    "grey",
    "teal",
)
# Display RGB per colour name; the renderer jitters these per object.
COLOUR_RGB = {
    "red": (220, 30, 30),
    "green": (40, 170, 50),
    "blue": (40, 70, 220),
    "yellow": (240, 220, 40),
    "purple": (130, 40, 170),
    "orange": (245, 140, 20),
    "pink": (250, 140, 190),
    "brown": (120, 70, 30),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "grey": (128, 128, 128),
    "teal": (20, 150, 150),
}
SIZES = ("small", "big")
# Object radius as a fraction of the image side, per size.
SIZE_RADIUS = {"small": 0.085, "big": 0.15}
PATTERNS = ("plain", "striped", "dotted", "checked")

# Centres must differ by this much (fraction of the side) along an axis for the relation along
# that axis to be stated: closer objects are neither left/right of nor above/below each other.
RELATION_MARGIN = 0.12
RELATIONS = ("left_of", "right_of", "above", "below")


@dataclasses.dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    pattern: str
    x: float  # centre, fraction of the width from the left edge
    y: float  # centre, fraction of the height from the top edge

    @property
    def radius(self) -> float:
        return SIZE_RADIUS[self.size]


@dataclasses.dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    background: tuple[int, int, int]

    def to_json_dict(self) -> dict:
        return {
            "objects": [dataclasses.asdict(o) for o in self.objects],
            "background": list(self.background),
        }

    @classmethod
    def from_json_dict(cls, data: dict) -> Scene:
        return cls(
            objects=tuple(SceneObject(**o) for o in data["objects"]),
            background=tuple(data["background"]),
        )


def relation_holds(a: SceneObject, relation: str, b: SceneObject) -> bool:
    """Whether ``a <relation> b`` is clearly true in the picture."""
    if relation == "left_of":
        return b.x - a.x > RELATION_MARGIN
    if relation == "right_of":
        return a.x - b.x > RELATION_MARGIN
    if relation == "above":
        return b.y - a.y > RELATION_MARGIN
    if relation == "below":
        return a.y - b.y > RELATION_MARGIN
    raise ValueError(f"unknown relation {relation!r}; expected one of {RELATIONS}")


def true_relations(scene: Scene) -> list[tuple[int, str, int]]:
    """Every clearly true (i, relation, j) between distinct objects of the scene."""
    return [
        (i, rel, j)
        for (i, a), (j, b) in itertools.permutations(enumerate(scene.objects), 2)
        for rel in RELATIONS
        if relation_holds(a, rel, b)
    ]


@dataclasses.dataclass(frozen=True)
class SceneVocabulary:
    """The attribute values a corpus draws from (its vocabulary-size knob)."""

    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = COLOURS
    sizes: tuple[str, ...] = SIZES
    patterns: tuple[str, ...] = PATTERNS

    def __post_init__(self):
        for name, values, known in (
            ("shapes", self.shapes, SHAPES),
            ("colours", self.colours, COLOURS),
            ("sizes", self.sizes, SIZES),
            ("patterns", self.patterns, PATTERNS),
        ):
            unknown = set(values) - set(known)
            if not values or unknown:
                raise ValueError(f"{name} must be a non-empty subset of {known}; got {values}")


def attribute_names(vocabulary: SceneVocabulary) -> list[str]:
    """Names of ``attribute_targets``' entries: shape×colour, shape, colour, then size×shape."""
    v = vocabulary
    return (
        [f"{colour} {shape}" for shape in v.shapes for colour in v.colours]
        + list(v.shapes)
        + list(v.colours)
        + [f"{size} {shape}" for size in v.sizes for shape in v.shapes]
    )


def attribute_targets(scene: Scene, vocabulary: SceneVocabulary) -> np.ndarray:
    """[A] float32 multi-hot of what a scene contains, ``A = len(attribute_names(vocabulary))``.

    The labels an object detector's classifier would be trained on (Visual Genome's objects and
    attributes for FaST-VGS's detector): which coloured shapes, shapes, colours and sized
    shapes are present. Positions and counts are left to the model that reads the features.
    """
    v = vocabulary
    blocks = (len(v.shapes) * len(v.colours), len(v.shapes), len(v.colours))
    offsets = np.cumsum((0,) + blocks)
    out = np.zeros(offsets[-1] + len(v.sizes) * len(v.shapes), np.float32)
    for obj in scene.objects:
        shape, colour = v.shapes.index(obj.shape), v.colours.index(obj.colour)
        out[offsets[0] + shape * len(v.colours) + colour] = 1.0
        out[offsets[1] + shape] = 1.0
        out[offsets[2] + colour] = 1.0
        out[offsets[3] + v.sizes.index(obj.size) * len(v.shapes) + shape] = 1.0
    return out


def _place(rng: np.random.Generator, radii: Sequence[float]) -> list[tuple[float, float]] | None:
    """Non-overlapping centres for discs of the given radii, or None if placement failed."""
    centres: list[tuple[float, float]] = []
    for r in radii:
        for _ in range(200):
            x, y = rng.uniform(r + 0.02, 1 - r - 0.02, size=2)
            if all(
                np.hypot(x - cx, y - cy) > r + cr + 0.03
                for (cx, cy), cr in zip(centres, radii, strict=False)
            ):
                centres.append((float(x), float(y)))
                break
        else:
            return None
    return centres


def sample_scene(
    rng: np.random.Generator,
    vocabulary: SceneVocabulary,
    min_objects: int,
    max_objects: int,
    repeat_probability: float,
) -> Scene:
    """Draws a random scene.

    ``repeat_probability`` is the chance that an object copies the shape and colour of one
    already placed, so that counts ("two red stars") matter for matching.
    """
    if not 1 <= min_objects <= max_objects <= 4:
        raise ValueError(
            f"need 1 <= min_objects <= max_objects <= 4, got {min_objects}, {max_objects}"
        )
    while True:
        count = int(rng.integers(min_objects, max_objects + 1))
        kinds: list[tuple[str, str, str, str]] = []
        for _ in range(count):
            if kinds and rng.random() < repeat_probability:
                shape, colour, _, _ = kinds[int(rng.integers(len(kinds)))]
            else:
                shape = str(rng.choice(vocabulary.shapes))
                colour = str(rng.choice(vocabulary.colours))
            kinds.append(
                (
                    shape,
                    colour,
                    str(rng.choice(vocabulary.sizes)),
                    str(rng.choice(vocabulary.patterns)),
                )
            )
        centres = _place(rng, [SIZE_RADIUS[k[2]] for k in kinds])
        if centres is None:
            continue
        background = _background(rng, {k[1] for k in kinds})
        objects = tuple(
            SceneObject(shape, colour, size, pattern, x, y)
            for (shape, colour, size, pattern), (x, y) in zip(kinds, centres, strict=True)
        )
        return Scene(objects, background)


def _background(rng: np.random.Generator, colours: set[str]) -> tuple[int, int, int]:
    """A muted background that keeps white and black objects visible."""
    level = int(rng.integers(150, 200)) if "black" in colours or "white" not in colours else 80
    tint = rng.integers(-12, 13, size=3)
    return tuple(int(np.clip(level + t, 0, 255)) for t in tint)


def near_duplicate(rng: np.random.Generator, scene: Scene, vocabulary: SceneVocabulary) -> Scene:
    """A copy of ``scene`` that differs in exactly one attribute of one object, or in one
    spatial relation (two objects swap places)."""
    objects = list(scene.objects)
    options = ["shape", "colour", "size", "pattern"]
    if len(objects) >= 2:
        options.append("swap")
    for _ in range(100):
        change = options[int(rng.integers(len(options)))]
        if change == "swap":
            i, j = rng.choice(len(objects), size=2, replace=False)
            a, b = objects[i], objects[j]
            if (a.shape, a.colour, a.size, a.pattern) == (b.shape, b.colour, b.size, b.pattern):
                continue
            if a.size != b.size:  # keep the placement valid: swap only equal-size objects
                continue
            objects[i] = dataclasses.replace(a, x=b.x, y=b.y)
            objects[j] = dataclasses.replace(b, x=a.x, y=a.y)
            return Scene(tuple(objects), scene.background)
        i = int(rng.integers(len(objects)))
        values = {
            "shape": vocabulary.shapes,
            "colour": vocabulary.colours,
            "size": vocabulary.sizes,
            "pattern": vocabulary.patterns,
        }[change]
        current = getattr(objects[i], change)
        alternatives = [v for v in values if v != current]
        if not alternatives:
            continue
        changed = dataclasses.replace(objects[i], **{change: str(rng.choice(alternatives))})
        if change == "size":
            others = [o for k, o in enumerate(objects) if k != i]
            if any(
                np.hypot(changed.x - o.x, changed.y - o.y) <= changed.radius + o.radius + 0.03
                for o in others
            ) or not (
                changed.radius < changed.x < 1 - changed.radius
                and changed.radius < changed.y < 1 - changed.radius
            ):
                continue
        objects[i] = changed
        return Scene(tuple(objects), scene.background)
    return scene
