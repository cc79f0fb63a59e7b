"""Training recipes shared by the example scripts and the `hf-mmdl` command."""
