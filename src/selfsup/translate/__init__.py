"""Unpaired image translation: CUT, FastCUT, DCLGAN and CycleGAN on digits-bg -> plain digits."""
