"""ema-asr: a Kaldi-style Mandarin ASR recipe with parallel training and a non-interfering EMA model.

The package imports nothing on its own, so pure-torch modules (`steps_py.parallel`,
`steps_py.nnet`) and their tests load without the Kaldi wheels. Modules that use
`kaldi_decoder` import `kaldifst` and `kaldi_hmm_gmm` first: the other order deadlocks in
libkaldifst_fst's static initialisation (kaldifst 1.7.17, kaldi-hmm-gmm 1.1.4); `kaldilm`
only ever runs in a child process (`steps_py.lang.lm`).

One BLAS thread per process unless the environment says otherwise (as Kaldi: parallelism
comes from jobs, ``--nj``). numpy's OpenBLAS otherwise starts a thread per core in every
job; on a busy 2-core machine a (210 x 39) @ (39 x 4008) product of the triphone GMM's
likelihoods then took 25 ms instead of 1.5 ms (17x, ``benchmarks/bench_blas_threads.py``).
This runs before numpy is imported by any step (``python -m steps_py.<step>`` imports this
package first); ``path.sh`` exports the same defaults for other tools.
"""

import os as _os

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    _os.environ.setdefault(_var, "1")

__version__ = "0.1.0"
