"""ema-asr: a Kaldi-style Mandarin ASR recipe with parallel training and a non-interfering EMA model.

The package imports nothing on its own, so pure-torch modules (`steps_py.parallel`,
`steps_py.nnet`) and their tests load without the Kaldi wheels. Modules that use
`kaldi_decoder` import `kaldifst` and `kaldi_hmm_gmm` first: the other order deadlocks in
libkaldifst_fst's static initialisation (kaldifst 1.7.17, kaldi-hmm-gmm 1.1.4); `kaldilm`
only ever runs in a child process (`steps_py.lang.lm`).
"""

__version__ = "0.1.0"
