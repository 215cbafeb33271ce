"""Backbones (small CNN, ResNets, ViTs) and heads."""
