"""Experiments built on training: k-fold cross-validation (:mod:`.cv`) and grids of trainings
with reports and plots (:mod:`.grid`), the paper's ablations among them."""
