"""AST splitting of source code into units and SEA blocks (implementation in `longapps.adapters.code`)."""
from longapps.adapters.code import LANGUAGES, CodeUnit, language_for, split_code

__all__ = ["CodeUnit", "LANGUAGES", "language_for", "split_code"]
