"""AISHELL-1 -> lhotse manifests (stage 0 of ``./run.sh --corpus aishell``)."""
