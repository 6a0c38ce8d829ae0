"""The builder (the one Hydra instantiate), the pipeline, the training cache, the sweep callback."""
