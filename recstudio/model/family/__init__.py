"""Family bases: small bases that turn the model context into a family's inputs (sequential, graph, feature, knowledge, social)."""
