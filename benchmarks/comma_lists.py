"""Comma-separated option values, as the benchmark scripts take them (`--backends jax,torch`).

Each script runs as `python benchmarks/SCRIPT.py`, so this folder is on its
import path and `from comma_lists import comma_list` finds this module.
"""


def comma_list(text, convert=str):
    """The items of `text` split at commas, blanks dropped, each passed through `convert`.

    Example:
    >>> comma_list("jax, torch,")
    ['jax', 'torch']
    >>> comma_list("64,128", int)
    [64, 128]
    """
    return [convert(item.strip()) for item in str(text).split(",") if item.strip()]
