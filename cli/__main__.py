"""`python -m keras_resvae.cli` runs the `resvae` command."""

from keras_resvae.cli.main import main

main(prog_name="resvae")
