"""Planning and preprocessing: nnunetv2's fingerprint, plans and preprocessing plus nnSAM configurations."""
