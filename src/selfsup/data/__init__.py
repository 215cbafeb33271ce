"""Datasets: the embedded digits-bg and synthetic-actions, real image and video datasets, and their stored form."""
