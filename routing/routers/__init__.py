"""Router presets, one module per method; importing this package registers them in ``ROUTERS``."""

from routing.routers import lora_mixer, meteora, mole, semantic, smora

__all__ = ["lora_mixer", "meteora", "mole", "semantic", "smora"]
