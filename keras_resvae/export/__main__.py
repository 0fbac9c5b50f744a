"""`python -m keras_resvae.export MODEL OUT`: the TensorFlow-backend side of `export_vae`."""

import argparse
import sys

from keras_resvae.export.exporter import EXPORT_FORMATS, write_export


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m keras_resvae.export")
    parser.add_argument("model", help="a .keras file")
    parser.add_argument("out", help="the folder to write")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="saved_model")
    parser.add_argument("--source", default="", help="where the model came from, for metadata")
    parser.add_argument("--trained-backend", default="")
    args = parser.parse_args(argv)

    from keras_resvae.runs import load_model

    try:
        vae = load_model(args.model)
        write_export(
            vae,
            args.out,
            args.format,
            args.source or None,
            args.trained_backend or None,
        )
    except ValueError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
