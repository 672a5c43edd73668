"""Input data: which corpus, how utterances are cropped and batched, how streams are mixed.

Every field of the ``data`` section of a run config, commented; ``configs/data.py`` exposes
it as a config file.
"""

import ml_collections


def data_config(preset: str = "small") -> ml_collections.ConfigDict:
    """The data section for a corpus size preset (tiny | small | large)."""
    config = ml_collections.ConfigDict()
    config.corpus = "spoken_scenes"  # the only embedded corpus
    config.preset = preset  # size preset: tiny (tests) | small (CPU demo) | large
    config.corpus_seed = 0  # same preset and seed give byte-identical data
    config.data_dir = "data"  # TFDS data dir; built on demand by fastvgs_jax.data.build
    config.sample_rate = 16_000  # every waveform is checked against it
    config.seed = 0  # shuffling and cropping seed of the pipelines

    # Audio-image stream (the VGS objective; SpokenCOCO's role).
    config.audio_image = ml_collections.ConfigDict()
    config.audio_image.split = "train"
    config.audio_image.batch_size = 64  # the reference batch
    config.audio_image.crop_seconds = 8.0  # training crops/pads captions to 8 s
    config.audio_image.min_seconds = 0.0  # captions are never dropped

    # Audio-only stream (the SSL pool; LibriSpeech's role in FaST-VGS+).
    config.audio_only = ml_collections.ConfigDict()
    config.audio_only.split = "audio_only"
    config.audio_only.batch_size = 64
    config.audio_only.crop_seconds = 10.0  # the reference crops LibriSpeech to 10 s
    config.audio_only.min_seconds = 2.0  # and drops clips shorter than 2 s

    # Share of batches per stream in the mixed pipeline (a phase may override it).
    config.mix = ml_collections.ConfigDict({"audio_image": 0.5, "audio_only": 0.5})

    # Frontend frame geometry, for frame-level padding masks (wav2vec2 CNN: 20 ms frames).
    config.frame_kernels = (10, 3, 3, 3, 3, 2, 2)
    config.frame_strides = (5, 2, 2, 2, 2, 2, 2)

    config.read_threads = 2  # Grain reader threads per stream
    return config
