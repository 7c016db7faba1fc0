"""Compatibility name: :class:`DataMeta` is :class:`~recstudio.model.base.context.ModelContext`."""
from recstudio.model.base.context import ModelContext as DataMeta  # noqa: F401
