"""The differentiable ops, one file per family.

Each op is a :class:`minifb.tensor.Function` subclass with ``forward`` and
``backward`` on raw backend arrays; :mod:`minifb.functional` wraps them into the
functions users call.
"""
