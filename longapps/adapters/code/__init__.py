"""Code splitting for SEA code search: AST units (functions, methods, classes, module code) and blocks.

`split_code(text, path)` -> list[CodeUnit]; see `split.py` for the algorithm, `languages.py` for the grammars.
"""
from longapps.adapters.code.languages import LANGUAGES, language_for
from longapps.adapters.code.split import CodeUnit, split_code

__all__ = ["CodeUnit", "LANGUAGES", "language_for", "split_code"]
