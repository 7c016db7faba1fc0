"""Knowledge-aware models: a knowledge graph of item entities beside the interactions."""
