"""binder_autorun: run every cell of a local notebook on a remote Jupyter kernel."""

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent

setup(
    name="binder_autorun",
    version="0.1.0",
    description="Run every cell of a local Jupyter notebook on a remote kernel (Binder, JupyterHub, any Jupyter server).",
    long_description=(here / "README.md").read_text(encoding="utf-8") if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    packages=find_packages(include=["binder_autorun", "binder_autorun.*"]),
    python_requires=">=3.10",
    install_requires=[
        "ipython>=8.0",
        "requests>=2.25",
        "urllib3>=2",  # streaming reads of the build event stream (read1)
        "websocket-client>=1.6",
        "nbformat>=5.7",
    ],
    extras_require={
        # --local starts a private jupyter_server with ipykernel kernels
        "local": ["jupyter_server>=2.0", "ipykernel>=6.0"],
        # `binder-autorun run` drives a local kernel through nbclient; -f/-y parameters are YAML
        "cli": ["nbclient>=0.8", "ipykernel>=6.0", "pyyaml>=5.1"],
        "test": [
            "jupyter_server>=2.0",
            "ipykernel>=6.0",
            "nbclient>=0.8",
            "pyyaml>=5.1",
            "pytest>=7",
            "pytest-timeout>=2.1",
            "pytest-xdist>=3.0",  # README's `python -m pytest` runs 3 workers (pytest.ini)
            "pexpect>=4.8",
            "psutil>=5.9",  # tests look for processes left behind
            # variables cross as numpy arrays and pandas objects
            "numpy>=1.24",
            "pandas>=2.0",
            # tests/browser: real JupyterLab + ipywidgets in Debian's chromium
            # (install with PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1; no browser download)
            "jupyterlab>=4.1",
            "ipywidgets>=8.1",
            "playwright>=1.40",
        ],
    },
    entry_points={"console_scripts": ["binder-autorun=binder_autorun.cli:main"]},
    classifiers=[
        "Framework :: IPython",
        "Framework :: Jupyter",
        "Programming Language :: Python :: 3",
    ],
)
