"""binder_autorun: run every cell of a local notebook on a remote Jupyter kernel."""
