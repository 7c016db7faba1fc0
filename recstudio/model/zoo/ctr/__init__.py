"""Click-through-rate (context-aware feature) models of the FEATURE family (recstudio.model.family.feature)."""
