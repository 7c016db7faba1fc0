"""Models and their blocks: ``loss``, ``sampler``, ``scorer``, ``module``, ``base``, ``zoo``.

Blocks never import models; see ``docs/architecture.md``.
"""
