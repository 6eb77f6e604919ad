"""The Kaldi bridge: Kaldi's own file formats, read and written as Kaldi's C++ code does.

Nothing here is corpus-specific. Modules (each small, named after what it handles):

* ``stream``            Kaldi's basic I/O (``base/io-funcs``): tokens, basic types, vectors,
                        matrices, text and binary (``\\0B`` header).
* ``topology``          ``HmmTopology`` (``hmm/hmm-topology.cc``).
* ``transition_model``  ``TransitionModel`` (``hmm/transition-model.cc``): tuples/triples,
                        transition ids, log-probs.
* ``diag_gmm``          ``DiagGmm`` and ``AmDiagGmm`` (``gmm/diag-gmm.cc``, ``gmm/am-diag-gmm.cc``).
* ``model_file``        ``final.mdl`` = TransitionModel + AmDiagGmm; conversion to and from the
                        project's GMM (``steps_py.gmm.model_io.MonoModel``) and kaldi-hmm-gmm.
* ``event_map``         ``EventMap`` (``tree/event-map.cc``): TE / SE / CE / NULL.
* ``tree``              ``ContextDependency`` (``tree/context-dep.cc``): the ``tree`` file.
* ``int_vector_ark``    archives of int32 vectors (``ali.*.gz``, ``train.ali``), text or binary,
                        gzipped or not (``util/kaldi-holder.h``, ``util/kaldi-table.h``).
* ``alignment``         transition-id alignments -> per-frame pdf ids, phones, phone segments
                        (``SplitToPhones``), frame agreement between two alignments.
* ``exp_dir``           a Kaldi experiment dir (final.mdl, tree, ali.*.gz / train.ali) in and out.
* ``lang_import``       a Kaldi lang dir (+ ARPA LM) -> a lang dir the project's graph builder uses.
* ``word_align``        word boundaries on a phone alignment with ``phones/align_lexicon.int``.

Steps: ``python -m steps_py.kaldi.lang_import`` (Kaldi lang dir + ARPA -> lang dir for the
graph builder), ``python -m steps_py.kaldi.export`` (project GMM + alignments -> Kaldi exp
dir), ``python -m steps_py.kaldi.ctm`` (CTM of a decode), ``python -m steps_py.kaldi.loglikes``
(network log-likelihoods as a Kaldi matrix archive for ``latgen-faster-mapped``). Kaldi
models are loaded for decoding and alignment by ``steps_py.gmm.model_io.read_model``; Kaldi
alignments train networks through ``python -m steps_py.nnet.egs --ali-dir``.
"""
