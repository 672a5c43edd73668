"""Foreign weights ↔ our parameter trees: HF transformers, fairseq, FaST-VGS+ releases."""
