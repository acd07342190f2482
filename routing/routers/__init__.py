"""Router presets, one module per method; each defines its ``RouterPreset`` constant(s).

The modules import nothing from the registry; :mod:`routing.presets` lists every preset explicitly.
"""
