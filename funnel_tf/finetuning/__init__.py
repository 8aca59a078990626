"""Finetuning runs: data, model initialisation, evaluation, best model, predictions, export."""
