"""The `resvae` command line (installed as `keras_resvae.cli`)."""
