"""Datasets: synthetic two-hand generator, the on-disk dataset format and the torch Dataset."""
