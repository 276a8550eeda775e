"""The nnSAM network: nnU-Net's encoder-decoder with a frozen MobileSAM image encoder, and its weights."""
