"""Builds a corpus (idempotently) and writes examples to look at.

python -m fastvgs_jax.data.build --corpus spoken_scenes --size small --data_dir data
python -m fastvgs_jax.data.build --size tiny --data_dir data --show 4 --out examples
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
import time

from absl import app, flags, logging

from fastvgs_jax.data import abx_items, sources, tfds_compat
from fastvgs_jax.data.spoken_scenes import builder as builder_lib
from fastvgs_jax.data.spoken_scenes import corpus, phones

CORPORA = ("spoken_scenes",)


def _check_writable(data_dir: str) -> None:
    try:
        os.makedirs(data_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".write-probe-"):
            pass
    except OSError as error:
        raise PermissionError(
            f"data dir {data_dir!r} is not writable ({error.strerror or error}); "
            "choose another --data_dir"
        ) from error


def _remove_half_built(data_dir: str, preset: str, seed: int) -> None:
    """Removes leftovers of an interrupted build so that it restarts cleanly."""
    path = sources.version_dir(data_dir, preset, seed)
    config_dir = os.path.dirname(path)
    for leftover in glob.glob(os.path.join(config_dir, f"*incomplete*{builder_lib.VERSION}*")):
        logging.warning("removing an interrupted build at %s", leftover)
        shutil.rmtree(leftover, ignore_errors=True)
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "dataset_info.json")):
        logging.warning("removing a half-built corpus at %s", path)
        shutil.rmtree(path)


def is_built(data_dir: str, preset: str = "small", seed: int = 0) -> bool:
    """Whether a complete build of spoken_scenes/``preset`` is under ``data_dir`` (its ABX
    item file is the last thing a build writes)."""
    path = sources.version_dir(data_dir, preset, seed)
    return os.path.exists(os.path.join(path, "dataset_info.json")) and os.path.exists(
        os.path.join(path, sources.ITEM_FILE)
    )


def ensure_built(
    data_dir: str,
    preset: str = "small",
    seed: int = 0,
    num_workers: int | None = None,
) -> builder_lib.SpokenScenes:
    """Builds spoken_scenes/``preset`` under ``data_dir`` unless a complete build is there.

    A complete build is reused as is; a half-built one is removed and rebuilt. The ABX item
    file is written next to the record files.

    Raises:
      ValueError: unknown preset. PermissionError: ``data_dir`` is not writable.
    """
    builder_lib.builder_config(preset, seed)  # validates the preset before touching the disk
    _check_writable(data_dir)
    _remove_half_built(data_dir, preset, seed)
    builder = builder_lib.make_builder(data_dir, preset, seed, num_workers)
    with tfds_compat.reproducible_tfds_writes():
        builder.download_and_prepare(
            file_format="array_record",
            download_config=builder_lib.tfds.download.DownloadConfig(try_download_gcs=False),
        )
    item_path = os.path.join(sources.version_dir(data_dir, preset, seed), sources.ITEM_FILE)
    if not os.path.exists(item_path):
        abx = sources.open_split(data_dir, preset, "abx", seed)
        text = abx_items.item_file_text(
            (abx[i] for i in range(len(abx))),
            phones.INVENTORY,
            int(builder.info.metadata["sample_rate"]),
        )
        partial = item_path + ".partial"
        with open(partial, "w") as f:
            f.write(text)
        os.replace(partial, item_path)
    return builder


def show_examples(data_dir: str, preset: str, seed: int, count: int, out_dir: str) -> list[str]:
    """Writes ``count`` training examples as wav + png + caption + phone timings."""
    import scipy.io.wavfile
    from PIL import Image

    os.makedirs(out_dir, exist_ok=True)
    split = sources.open_split(data_dir, preset, "train", seed)
    rate = 16_000
    written = []
    for index in range(min(count, len(split))):
        ex = split[index]
        stem = sources.decode_text(ex["utterance_id"])
        scipy.io.wavfile.write(os.path.join(out_dir, stem + ".wav"), rate, ex["audio"])
        image = Image.fromarray(ex["image"]).resize((256, 256), Image.NEAREST)
        image.save(os.path.join(out_dir, f"img{int(ex['image_id']):06d}.png"))
        with open(os.path.join(out_dir, stem + ".txt"), "w") as f:
            f.write(sources.decode_text(ex["text"]) + "\n")
            f.write(f"speaker: {sources.decode_text(ex['speaker'])}\n")
            scene = json.loads(sources.decode_text(ex["scene"]))
            f.write("scene: " + json.dumps(scene) + "\n")
        with open(os.path.join(out_dir, stem + ".phones.tsv"), "w") as f:
            f.write("onset_s\toffset_s\tphone\n")
            for pid, start, end in zip(
                ex["phone_ids"], ex["phone_starts"], ex["phone_ends"], strict=True
            ):
                f.write(f"{start / rate:.4f}\t{end / rate:.4f}\t{phones.INVENTORY[pid]}\n")
        written.append(stem)
        print(f"{stem}  [{sources.decode_text(ex['speaker'])}]  {sources.decode_text(ex['text'])}")
    return written


FLAGS = flags.FLAGS


def define_flags() -> None:
    """Registers the command-line flags (not at import: importing the library defines none)."""
    flags.DEFINE_enum("corpus", "spoken_scenes", CORPORA, "Corpus to build.")
    flags.DEFINE_enum("size", "small", list(corpus.PRESETS), "Size preset.")
    flags.DEFINE_integer("seed", 0, "Corpus seed: same preset and seed give identical bytes.")
    flags.DEFINE_string("data_dir", "data", "Where TFDS datasets live.")
    flags.DEFINE_integer("workers", None, "Synthesis processes (default: all cores).")
    flags.DEFINE_integer("show", 0, "Write this many training examples to --out.")
    flags.DEFINE_string("out", "examples", "Folder for --show.")


def main(argv) -> None:
    del argv
    start = time.time()
    builder = ensure_built(FLAGS.data_dir, FLAGS.size, FLAGS.seed, FLAGS.workers)
    info = builder.info
    print(f"spoken_scenes/{builder.builder_config.name} at {builder.data_dir}")
    print(f"content hash {info.metadata.get('content_hash')}")
    for split, split_info in info.splits.items():
        print(f"  {split:<11} {split_info.num_examples:>7} examples")
    print(f"ready in {time.time() - start:.1f} s")
    if FLAGS.show:
        show_examples(FLAGS.data_dir, FLAGS.size, FLAGS.seed, FLAGS.show, FLAGS.out)
        print(f"wrote {FLAGS.show} examples to {FLAGS.out}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
