"""Which grammar reads which file, and the per-language tables of AST node types the splitter looks for."""
from __future__ import annotations

import importlib
import logging
import os
import threading
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

LANGUAGES: dict[str, str] = {
    ".py": "python", ".pyi": "python",
    ".java": "java",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp",
    ".rb": "ruby",
    ".php": "php",
    ".cs": "csharp",
    ".kt": "kotlin", ".kts": "kotlin",
    ".scala": "scala", ".sc": "scala",
    ".swift": "swift",
    ".lua": "lua",
    ".sh": "bash", ".bash": "bash",
}


def language_for(path: str) -> str | None:
    """The language of a file from its extension (case-insensitive), or None when unknown."""
    ext = os.path.splitext(path)[1].lower()
    return LANGUAGES.get(ext)


# language -> (module, function returning the grammar pointer)
_GRAMMARS: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"),
    "java": ("tree_sitter_java", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
    "ruby": ("tree_sitter_ruby", "language"),
    "php": ("tree_sitter_php", "language_php"),
    "csharp": ("tree_sitter_c_sharp", "language"),
    "kotlin": ("tree_sitter_kotlin", "language"),
    "scala": ("tree_sitter_scala", "language"),
    "swift": ("tree_sitter_swift", "language"),
    "lua": ("tree_sitter_lua", "language"),
    "bash": ("tree_sitter_bash", "language"),
}

_local = threading.local()  # tree-sitter parsers are not thread-safe: one per thread and language
_languages: dict[str, object] = {}
_failed: set[str] = set()


def get_parser(language: str):
    """A cached tree-sitter parser for `language`, or None when its grammar is unknown or fails to load."""
    parsers = getattr(_local, "parsers", None)
    if parsers is None:
        parsers = _local.parsers = {}
    if language in parsers:
        return parsers[language]
    parser = None
    if language in _GRAMMARS and language not in _failed:
        try:
            import tree_sitter

            lang = _languages.get(language)
            if lang is None:
                mod, fn = _GRAMMARS[language]
                lang = _languages[language] = tree_sitter.Language(getattr(importlib.import_module(mod), fn)())
            parser = tree_sitter.Parser(lang)
        except Exception as exc:  # missing wheel, ABI mismatch...
            log.warning("no tree-sitter grammar for %s (%s); using line windows", language, exc)
            _failed.add(language)
    parsers[language] = parser
    return parser


@dataclass(frozen=True)
class Spec:
    """The node types that make units in one language."""

    functions: frozenset[str]              # definitions with a body -> function/method units
    classes: frozenset[str]                # class-like definitions -> class units (methods inside are units too)
    wrappers: frozenset[str] = frozenset()  # nodes wrapping a definition whose span they extend (decorators, templates)
    namespaces: frozenset[str] = frozenset()  # named scopes that qualify names but are not units themselves
    imports: frozenset[str] = frozenset()  # top-level nodes that alone don't make a module unit worth keeping
    sep: str = "."                         # qualified-name separator
    bodies: frozenset[str] = frozenset()   # child node types that are the body when there is no 'body' field
    empty_functions: bool = False          # a function without a body is still a definition (Ruby/Lua
                                           # `def f; end`), not a declaration folding into its class
    names: dict[str, str] = field(default_factory=dict)  # node type -> name when it has no 'name' field


_JS_FUNCS = frozenset({"function_declaration", "generator_function_declaration", "method_definition",
                       "function", "function_expression", "arrow_function", "generator_function"})
_JS_CLASSES = frozenset({"class_declaration", "abstract_class_declaration", "class"})
_TS_CLASSES = _JS_CLASSES | {"interface_declaration", "enum_declaration"}
_C_CLASSES = frozenset({"struct_specifier", "union_specifier", "enum_specifier"})

SPECS: dict[str, Spec] = {
    "python": Spec(
        functions=frozenset({"function_definition"}),
        classes=frozenset({"class_definition"}),
        wrappers=frozenset({"decorated_definition"}),
        imports=frozenset({"import_statement", "import_from_statement", "future_import_statement"}),
    ),
    "java": Spec(
        functions=frozenset({"method_declaration", "constructor_declaration", "compact_constructor_declaration"}),
        classes=frozenset({"class_declaration", "interface_declaration", "enum_declaration",
                           "record_declaration", "annotation_type_declaration"}),
        imports=frozenset({"package_declaration", "import_declaration"}),
    ),
    "javascript": Spec(functions=_JS_FUNCS, classes=_JS_CLASSES, wrappers=frozenset({"export_statement"}),
                       imports=frozenset({"import_statement"})),
    "typescript": Spec(functions=_JS_FUNCS, classes=_TS_CLASSES, wrappers=frozenset({"export_statement"}),
                       namespaces=frozenset({"internal_module", "module"}),
                       imports=frozenset({"import_statement"})),
    "go": Spec(
        functions=frozenset({"function_declaration", "method_declaration"}),
        classes=frozenset({"type_spec"}),
        imports=frozenset({"package_clause", "import_declaration"}),
    ),
    "rust": Spec(
        functions=frozenset({"function_item"}),
        classes=frozenset({"struct_item", "enum_item", "union_item", "trait_item", "impl_item"}),
        namespaces=frozenset({"mod_item"}),
        imports=frozenset({"use_declaration", "extern_crate_declaration", "mod_item"}),
    ),
    "c": Spec(
        functions=frozenset({"function_definition"}),
        classes=_C_CLASSES,
        imports=frozenset({"preproc_include"}),
    ),
    "cpp": Spec(
        functions=frozenset({"function_definition"}),
        classes=_C_CLASSES | {"class_specifier"},
        wrappers=frozenset({"template_declaration"}),
        namespaces=frozenset({"namespace_definition"}),
        imports=frozenset({"preproc_include", "using_declaration", "alias_declaration"}),
        sep="::",
    ),
    "ruby": Spec(
        functions=frozenset({"method", "singleton_method"}),
        classes=frozenset({"class", "module"}),  # `class << self` is walked through: its methods are the class's
        empty_functions=True,
    ),
    "php": Spec(
        functions=frozenset({"function_definition", "method_declaration"}),
        classes=frozenset({"class_declaration", "interface_declaration", "trait_declaration", "enum_declaration"}),
        namespaces=frozenset({"namespace_definition"}),  # `namespace A\B;` qualifies the declarations after it
        imports=frozenset({"php_tag", "namespace_definition", "namespace_use_declaration"}),
    ),
    "csharp": Spec(
        functions=frozenset({"method_declaration", "constructor_declaration", "destructor_declaration",
                             "local_function_statement"}),
        classes=frozenset({"class_declaration", "struct_declaration", "interface_declaration",
                           "record_declaration", "record_struct_declaration", "enum_declaration"}),
        namespaces=frozenset({"namespace_declaration", "file_scoped_namespace_declaration"}),
        imports=frozenset({"using_directive", "extern_alias_directive", "file_scoped_namespace_declaration"}),
    ),
    "kotlin": Spec(
        functions=frozenset({"function_declaration", "secondary_constructor"}),
        classes=frozenset({"class_declaration", "object_declaration"}),
        bodies=frozenset({"function_body", "class_body", "enum_class_body", "block"}),
        imports=frozenset({"package_header", "import_list", "import_header", "import"}),
        names={"secondary_constructor": "constructor"},
    ),
    "scala": Spec(
        functions=frozenset({"function_definition"}),
        classes=frozenset({"class_definition", "object_definition", "trait_definition", "enum_definition"}),
        imports=frozenset({"package_clause", "import_declaration"}),
    ),
    "swift": Spec(
        functions=frozenset({"function_declaration", "init_declaration", "deinit_declaration"}),
        classes=frozenset({"class_declaration", "protocol_declaration"}),  # class/struct/enum/extension/actor
        imports=frozenset({"import_declaration"}),
        names={"init_declaration": "init", "deinit_declaration": "deinit"},
    ),
    "lua": Spec(
        functions=frozenset({"function_declaration"}),
        classes=frozenset(),
        empty_functions=True,
    ),
    "bash": Spec(
        functions=frozenset({"function_definition"}),
        classes=frozenset(),
    ),
}
SPECS["tsx"] = SPECS["typescript"]
