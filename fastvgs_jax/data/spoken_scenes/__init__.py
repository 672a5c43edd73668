"""The embedded "spoken scenes" corpus: rendered scenes, spoken captions, phone alignments."""
