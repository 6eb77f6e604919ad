"""The Mandarin digits corpus (real 8 kHz speech with a Kaldi experiment beside it) for
``./run.sh --corpus digits``: the speaker split into Kaldi data dirs (``local.digits.prepare``) and the frame agreement of the project's alignments with Kaldi's
(``local.digits.ali_agreement``)."""
