"""Adapter generation and transfer: SG-LoRA, ICM-LoRA (adapters from a description or a task
vector) and Trans-LoRA (move an adapter to another base model).

Imports only ``hub.core`` of Loom's packages (plus torch, numpy, transformers, peft); heavy
modules are imported by the submodules, never here.
"""

from __future__ import annotations

__all__ = ["flat", "icm_lora", "sg_lora", "trans_lora", "artifact"]
