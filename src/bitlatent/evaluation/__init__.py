"""Evaluation helpers outside the model core: classic codecs and report plots."""
