"""Decoding: the GEMM decoder, reference sets (built-in, NIfTI folders, Neurosynth), term maps, similar components,
and visitors' maps on the public decoder."""
