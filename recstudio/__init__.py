"""RecStudio: a modular framework and model zoo for recommender systems in PyTorch."""
__version__ = "0.1.0"
