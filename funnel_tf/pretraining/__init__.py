"""Pretraining runs (MLM, ELECTRA): inputs, defaults and the run folder."""
