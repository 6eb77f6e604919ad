"""Mandarin: pinyin pronunciations (`pron`), the pronunciation lexicon (`lexicon`) and the
Kaldi dict dir (`prepare_dict`) of the Mandarin corpora (synthetic, AISHELL, Kaldi dirs)."""
