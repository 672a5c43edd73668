"""Input data: which corpus, how utterances are cropped and batched, how streams are mixed.

Every field of the ``data`` section of a run config, commented; ``configs/data.py`` exposes
it as a config file.
"""

import ml_collections


def data_config(preset: str = "small") -> ml_collections.ConfigDict:
    """The data section for a corpus size preset (tiny | small | large)."""
    config = ml_collections.ConfigDict()
    # The embedded corpus (spoken_scenes): what every role below reads unless it names a
    # real corpus.
    config.corpus = "spoken_scenes"
    config.preset = preset  # size preset: tiny (tests) | small (CPU demo) | large
    config.corpus_seed = 0  # same preset and seed give byte-identical data
    config.data_dir = "data"  # TFDS data dir; built on demand by fastvgs_jax.data.build
    config.sample_rate = 16_000  # every waveform is checked against it
    config.seed = 0  # shuffling and cropping seed of the pipelines

    # Audio-image stream (the VGS objective; SpokenCOCO's role).
    config.audio_image = ml_collections.ConfigDict()
    config.audio_image.corpus = "spoken_scenes"  # or spokencoco | flickr8k | places
    config.audio_image.split = "train"  # spokencoco: e.g. train_karpathy
    config.audio_image.batch_size = 64  # the reference batch
    config.audio_image.crop_seconds = 8.0  # training crops/pads captions to 8 s
    config.audio_image.min_seconds = 0.0  # captions are never dropped
    # Share of the split's examples the stream reads, in (0, 1]: a fixed subset (the same for
    # every seed; a smaller share's examples are among a larger one's), for data-scaling sweeps.
    config.audio_image.fraction = 1.0

    # Audio-only stream (the SSL pool; LibriSpeech's role in FaST-VGS+).
    config.audio_only = ml_collections.ConfigDict()
    config.audio_only.corpus = "spoken_scenes"  # or librispeech (or a captioned corpus's audio)
    config.audio_only.split = "audio_only"  # librispeech: subsets joined by '+'
    config.audio_only.batch_size = 64
    config.audio_only.crop_seconds = 10.0  # the reference crops LibriSpeech to 10 s
    config.audio_only.min_seconds = 2.0  # and drops clips shorter than 2 s
    config.audio_only.fraction = 1.0  # share of its (long enough) examples, as above

    # Share of batches per stream in the mixed pipeline (a phase may override it).
    config.mix = ml_collections.ConfigDict({"audio_image": 0.5, "audio_only": 0.5})

    # Frontend frame geometry, for frame-level padding masks (wav2vec2 CNN: 20 ms frames).
    config.frame_kernels = (10, 3, 3, 3, 3, 2, 2)
    config.frame_strides = (5, 2, 2, 2, 2, 2, 2)

    config.read_threads = 2  # Grain reader threads per stream

    # Evaluation sets: the training-time subset, the retrieval test split, the ABX set.
    config.validation = ml_collections.ConfigDict(
        {"corpus": "spoken_scenes", "split": "validation"}
    )
    config.retrieval = ml_collections.ConfigDict({"corpus": "spoken_scenes", "split": "test"})
    config.abx = ml_collections.ConfigDict()
    config.abx.corpus = "spoken_scenes"  # or librispeech (Libri-light ABX: dev-clean, …)
    config.abx.split = "abx"
    config.abx.item_file = ""  # the Libri-light .item file ("": the embedded corpus's own)

    # Where the real corpora are (local folders or gs:// paths), as published; see
    # docs/corpora.md. "layout" reads the files directly (an index is built once, audio is
    # decoded by the reader threads); "array_record" reads a conversion made by
    # `python -m fastvgs_jax.data.corpora.convert` under data_dir.
    config.corpora = ml_collections.ConfigDict()
    config.corpora.spokencoco = ml_collections.ConfigDict(
        {"root": "", "image_root": "", "format": "layout"}  # image_root: MSCOCO's folder
    )
    config.corpora.librispeech = ml_collections.ConfigDict({"root": "", "format": "layout"})
    config.corpora.flickr8k = ml_collections.ConfigDict(
        # root: flickr_audio/; image_root: Flicker8k_Dataset/; text_root: Flickr8k_text/
        {"root": "", "image_root": "", "text_root": "", "format": "layout"}
    )
    config.corpora.places = ml_collections.ConfigDict(
        # root: the folder of the JSON manifests; the roots replace the JSON's base paths
        {"root": "", "audio_root": "", "image_root": "", "format": "layout"}
    )
    config.on_bad_examples = "fail"  # or "skip": bad files left out, counted in the index
    config.index_dir = ""  # where checked indexes are cached ("": <data_dir>/indexes)
    config.index_threads = 16  # concurrent header reads while checking a corpus

    # The image side of captioned real corpora: "pixels" (decoded, resized to `size`, centre
    # cropped), "regions" (precomputed detector features from `regions`, FaST-VGS's input) or
    # "vit" (each image embedded once by the frozen pretrained ViT in `vit_dir`, cached under
    # <data_dir>/image_embeddings by `python -m fastvgs_jax.data.corpora.image_embeddings` or on
    # first use, and read as regions: model.image.kind="regions", region_dim = the ViT's
    # width, num_regions = 1 for "pooled", 1 + patches for "all").
    config.image = ml_collections.ConfigDict()
    config.image.kind = "pixels"
    config.image.size = 224
    config.image.regions = ""  # HDF5 or bottom-up-attention TSV keyed by image id
    config.image.num_regions = 36
    config.image.vit_dir = ""  # kind="vit": an HF directory (config.json + model.safetensors)
    config.image.vit_tokens = "pooled"  # kind="vit": "pooled" (one per image) | "all"
    return config


def paper_corpora(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Points every role of a data config at the paper's corpora: SpokenCOCO's Karpathy
    splits (train, val for the training-time subset, the 5k-image test for retrieval), the
    960 h of LibriSpeech as the audio-only pool, Libri-light ABX on dev-clean, and Faster
    R-CNN regions as the image side. Paths stay empty for the user to set."""
    config.audio_image.corpus, config.audio_image.split = "spokencoco", "train_karpathy"
    config.validation.corpus, config.validation.split = "spokencoco", "val_karpathy"
    config.retrieval.corpus, config.retrieval.split = "spokencoco", "test_karpathy"
    config.audio_only.corpus = "librispeech"
    config.audio_only.split = "train-clean-100+train-clean-360+train-other-500"
    config.abx.corpus, config.abx.split = "librispeech", "dev-clean"
    config.image.kind = "regions"  # bottom-up-attention features: 36 × 2048 + boxes
    return config
