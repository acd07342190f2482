"""One module per merge method; importing this package registers them all in ``METHODS``."""

from merging.methods import cat, dare, linear, lora_lego, lorahub, magnitude_prune, ties  # noqa: F401
