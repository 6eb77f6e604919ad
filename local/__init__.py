"""Corpus- and language-specific code, as Kaldi's and icefall's ``local/``.

Everything under ``steps_py/`` is corpus-agnostic (Kaldi's ``steps/`` + ``utils/``); what a
corpus or a language needs of its own lives here:

* ``local.synth``: the embedded synthetic Mandarin corpus (stage 0);
* ``local.aishell``: AISHELL-1 -> lhotse manifests (stage 0);
* ``local.mandarin``: the Mandarin pinyin lexicon (``pron``: hanzi -> initial + tonal final),
  the full pronunciation lexicon stage 1 checks transcripts against, and the dict dir of
  stage 2;
* ``local.digits``: the Mandarin digits corpus (data dirs, dict dir, LM) for
  ``./run.sh --corpus digits``.

What a new corpus must provide is in docs/NEW_CORPUS.md.
"""
