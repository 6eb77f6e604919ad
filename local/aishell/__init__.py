"""AISHELL-1 -> lhotse manifests (the corpus step of ``./run.sh --corpus aishell``)."""
