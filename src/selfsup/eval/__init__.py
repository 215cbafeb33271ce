"""Evaluation of frozen features: linear probe, kNN, fine-tuning, Zipf-KL."""
