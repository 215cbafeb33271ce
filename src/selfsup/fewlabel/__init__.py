"""Learning from few labels: labeled subsets, fine-tuning, SimCLR v2 distillation, self-training."""
