"""ema-asr: a Kaldi-style Mandarin ASR recipe with parallel training and a non-interfering EMA model.

Import order matters for the next-generation Kaldi wheels: importing `kaldilm` or
`kaldi_decoder` before `kaldifst`/`kaldi_hmm_gmm` in one process deadlocks inside
libkaldifst_fst's static initialisation (seen with kaldifst 1.7.17 and 1.8.3, kaldi-hmm-gmm 1.1.4,
kaldi-decoder 0.3.2, kaldilm 1.15.5). Every module of this package is imported after this
file, so loading the two safe ones here first (about 0.1 s) makes any later order safe.
"""

import kaldi_hmm_gmm  # noqa: F401  (must come before kaldilm / kaldi_decoder, see above)
import kaldifst  # noqa: F401

__version__ = "0.1.0"
