"""One module per merge method; :data:`ALL` lists every method, the one place that does.

A method module defines its function and a :class:`merging.spec.MergeMethod` constant and imports
nothing from the registry; :mod:`merging.registry` builds ``METHODS`` from :data:`ALL` (mergekit's
registry style: the registry imports the methods, the methods import nothing back). To add a
method, write its module and add its constant here.
"""

from merging.methods import cat, dare, linear, lora_lego, lorahub, magnitude_prune, ties
from merging.spec import MergeMethod

#: Every merge method, in the order the docs list them by (the registry sorts by name).
ALL: tuple[MergeMethod, ...] = (
    linear.LINEAR,
    linear.SVD,
    cat.CAT,
    ties.TIES,
    ties.TIES_SVD,
    magnitude_prune.MAGNITUDE_PRUNE,
    magnitude_prune.MAGNITUDE_PRUNE_SVD,
    dare.DARE_LINEAR,
    dare.DARE_TIES,
    dare.DARE_LINEAR_SVD,
    dare.DARE_TIES_SVD,
    lorahub.LORAHUB,
    lora_lego.LORA_LEGO,
)
