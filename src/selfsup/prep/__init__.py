"""Data preparation: foreground masks, in-painted backgrounds, optical flow and audio features."""
