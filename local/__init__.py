"""Corpus- and language-specific code, as Kaldi's and icefall's ``local/``.

Everything under ``steps_py/`` is corpus-agnostic (Kaldi's ``steps/`` + ``utils/``); what a
corpus or a language needs of its own lives here:

* ``local.synth``: the embedded synthetic Mandarin corpus;
* ``local.aishell``: AISHELL-1 -> lhotse manifests;
* ``local.mandarin``: the Mandarin pinyin lexicon (``pron``: hanzi -> initial + tonal final),
  the full pronunciation lexicon ``steps_py.data.prepare`` checks transcripts against, and
  the dict dir ``steps_py.lang.prepare`` reads;
* ``local.digits``: the Mandarin digits corpus for ``./run.sh --corpus digits``: the speaker
  split into Kaldi data dirs and the frame agreement of the project's alignments
  with the corpus's Kaldi ones; its lexicon, lang and LM are the corpus's own
  Kaldi files, imported by ``steps_py.kaldi.lang_import``.

What a new corpus must provide is in docs/NEW_CORPUS.md.
"""
