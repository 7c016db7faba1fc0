"""RecStudio: a modular research framework and model zoo for recommender systems."""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent

setup(
    name="recstudio",
    version="0.1.0",
    description="A modular research framework and model zoo for recommender systems in PyTorch",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["recstudio", "recstudio.*"]),
    # the bundled MovieLens-100K files (datasets/) stay out of wheels and sdists: installed
    # packages download them from GroupLens, whose terms forbid redistribution
    package_data={"recstudio.data": ["registry/*.yaml"],
                  "recstudio.model.zoo": ["*/*.yaml"]},
    install_requires=[
        "torch>=2.1",
        "numpy>=1.24",
        "scipy>=1.10",
        "pandas>=2.0",
        "pyarrow>=14",
        "pyyaml>=6",
        "tqdm>=4.60",
        "pytorch-lightning>=2.2",
        "matplotlib>=3.7",  # loss / metric curves of every run, `recstudio compare` charts
    ],
    extras_require={
        # one of the faiss builds (they install the same `faiss` package): pick exactly one
        "faiss-cpu": ["faiss-cpu>=1.7.4"],
        "faiss-gpu": ["faiss-gpu>=1.7.2"],
        "faiss-gpu-cu12": ["faiss-gpu-cu12>=1.8"],
        "nni": ["nni>=3.0", "setuptools>=77.0.3,<81"],  # nnictl imports pkg_resources
        # uvicorn[standard] brings httptools and uvloop: ~15% less server CPU per request than h11
        "serving": ["fastapi>=0.100", "uvicorn[standard]>=0.23"],
        "dev": ["pytest>=7", "faiss-cpu>=1.7.4", "nni>=3.0", "setuptools>=77.0.3,<81", "fastapi>=0.100",
                "uvicorn>=0.23", "httpx>=0.24", "hypothesis>=6"],
    },
    entry_points={"console_scripts": ["recstudio=recstudio.__main__:console_main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
