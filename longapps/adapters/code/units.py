"""Find the units of a parsed file: functions/methods and classes, with qualified names and spans.

The walk never descends into a function (nested functions stay in their parent's text) but does descend
into classes (their methods become units of their own) and into any other node (so definitions under
`if`, `try`, `extern "C"`, `#ifdef`, an IIFE ... are still found).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from longapps.adapters.code.languages import SPECS, Spec

_WS = re.compile(r"\s+")
_JS = ("javascript", "typescript", "tsx")
_JS_EXPR_FUNCS = frozenset({"function", "function_expression", "arrow_function", "generator_function"})
_C_NAME_LEAVES = frozenset({"identifier", "field_identifier", "qualified_identifier", "destructor_name",
                            "operator_name", "type_identifier", "template_function", "operator_cast"})
SIGNATURE_CHARS = 200
_HASH_COMMENT = re.compile(r"\s*#")
_COMMENT_LINE = {"python": _HASH_COMMENT, "ruby": _HASH_COMMENT, "bash": _HASH_COMMENT,
                 "lua": re.compile(r"\s*--"), "php": re.compile(r"\s*(#|//|/\*|\*(\s|/|$))")}
_C_COMMENT_LINE = re.compile(r"\s*(//|/\*|\*(\s|/|$))")


@dataclass
class RawUnit:
    kind: str
    name: str
    parents: list[str]
    start: int         # 0-based first row, leading doc comments included
    decl: int          # 0-based row where the declaration itself starts
    end: int           # 0-based last row
    signature: str
    keep_upto: int     # last row of the header: what a class summary keeps of this unit
    span: tuple[int, int] = (0, 0)  # bytes of the unit's node (for units that share their lines: minified code)
    children: list["RawUnit"] = field(default_factory=list)


def end_row(node) -> int:
    """Last row holding any of the node's text (a node ending at column 0 ends on the row before)."""
    row, col = node.end_point
    if col == 0 and row > node.start_point.row:
        return row - 1
    return row


def collapse(text: str, limit: int = SIGNATURE_CHARS) -> str:
    text = _WS.sub(" ", text).strip()
    return text[:limit]


class UnitFinder:
    def __init__(self, src: bytes, lines: list[str], language: str) -> None:
        self.src = src
        self.lines = lines
        self.language = language
        self.spec: Spec = SPECS[language]
        self.units: list[RawUnit] = []

    # -- helpers ------------------------------------------------------------------------------------
    def text(self, node) -> str:
        return self.src[node.start_byte:node.end_byte].decode("utf-8", "replace")

    def name_of(self, node) -> str:
        n = node.child_by_field_name("name")
        return collapse(self.text(n), 120) if n is not None else self.spec.names.get(node.type, "")

    def body_of(self, node):
        """The node's 'body' field, or (grammars without one: Kotlin) its first child of a body type."""
        body = node.child_by_field_name("body")
        if body is None and self.spec.bodies:
            body = next((c for c in node.named_children if c.type in self.spec.bodies), None)
        return body

    def qualify(self, parents: list[str], name: str) -> str:
        return self.spec.sep.join([*parents, name]) if parents else name

    def header_end(self, body, decl_row: int) -> int:
        """Last row of the declaration before `body` (the body's row if the body opens on a header row)."""
        if body is None:
            return decl_row
        row, col = body.start_point
        line = self.lines[row] if row < len(self.lines) else ""
        before = line[:col] if col <= len(line) else line
        if not before.strip() and row > decl_row:
            row -= 1
            # comments between the header and the first statement belong to the body
            comment = _COMMENT_LINE.get(self.language, _C_COMMENT_LINE)
            while row > decl_row and (not self.lines[row].strip() or comment.match(self.lines[row])):
                row -= 1
            return row
        return max(row, decl_row)

    def signature(self, start_node, body) -> str:
        stop = body.start_byte if body is not None else start_node.end_byte
        for c in start_node.children:  # a comment between the header and the body (Ruby, Python) is not in it
            if c.start_byte >= stop:
                break
            if "comment" in c.type and c.start_point.row > start_node.start_point.row:
                stop = c.start_byte
                break
        text = self.src[start_node.start_byte:stop].decode("utf-8", "replace")
        if body is None:
            text = text.split("\n", 1)[0]
        return collapse(text)

    def doc_start(self, node, row: int) -> int:
        """Extend a unit upwards over the comments (and TS method decorators) right above it, no blank line
        between."""
        prev = node.prev_sibling
        parent = node.parent
        if prev is None and self.language == "ruby" and parent is not None and parent.start_byte == node.start_byte:
            prev = parent.prev_sibling  # the first statement of a body_statement: comments sit before that node
        while prev is not None and ("comment" in prev.type or prev.type == "decorator") \
                and row - 1 <= end_row(prev) <= row:
            # the comment must start its line (not trail code on that line)
            r, c = prev.start_point
            if self.lines[r][:c].strip():
                break
            row = r
            prev = prev.prev_sibling
        return row

    def emit(self, owner, kind, name, parents, span_node, decl_node, body, sig_node=None):
        decl = decl_node.start_point.row
        start = self.doc_start(span_node, span_node.start_point.row)
        end = max(end_row(span_node), decl)
        while decl < end < len(self.lines) and not self.lines[end].strip():
            end -= 1  # indentation-based bodies (Scala) take the blank lines after them
        unit = RawUnit(kind=kind, name=name or "<anonymous>", parents=list(parents), start=start,
                       decl=decl, end=end, signature=self.signature(sig_node or decl_node, body),
                       keep_upto=self.header_end(body, decl), span=(span_node.start_byte, span_node.end_byte))
        (owner.children if owner is not None else self.units).append(unit)
        return unit

    # -- walk ---------------------------------------------------------------------------------------
    def find(self, root) -> list[RawUnit]:
        self.walk(root, [], None, False)
        return self.units

    def walk(self, node, parents, owner, in_class):
        for child in node.named_children:
            if child.type in self.spec.namespaces and self.body_of(child) is None:
                # `namespace A.B;` (C#, PHP): qualifies the declarations after it (or inside it, for grammars
                # that nest them)
                name = self.name_of(child)
                parents = [*parents, name] if name else parents
                self.walk(child, parents, owner, in_class)
                continue
            self.visit(child, parents, owner, in_class, child)

    def visit(self, node, parents, owner, in_class, span):
        t = node.type
        spec = self.spec
        if t in spec.wrappers:
            inner = node.child_by_field_name("definition") or node.child_by_field_name("declaration")
            if inner is None:
                for c in node.named_children:
                    if c.type in spec.functions or c.type in spec.classes or c.type in spec.wrappers:
                        inner = c
            if inner is not None:  # the wrapper's span (decorators, `template<...>`, `export`) joins the unit
                return self.visit(inner, parents, owner, in_class, span)
            return self.walk(node, parents, owner, in_class)
        lang = self.language
        if lang in _JS:
            if self.visit_js(node, parents, owner, in_class, span):
                return
        elif lang == "lua" and self.visit_lua(node, parents, owner, in_class, span):
            return
        if t in spec.functions and (lang not in _JS or t not in _JS_EXPR_FUNCS):
            body = self.body_of(node)
            if body is None and not spec.empty_functions:  # abstract/interface/prototype: folds into the class
                return
            name, kind, quals = self.function_name(node, parents, in_class)
            self.emit(owner, kind, self.qualify(quals, name), quals, span, node, body)
            return
        if t in spec.classes and not (t == "class" and lang in _JS):
            if self.visit_class(node, parents, owner, span):
                return
        if t in ("type_definition", "declaration", "field_declaration") and lang in ("c", "cpp"):
            ty = node.child_by_field_name("type")
            if ty is not None and ty.type in spec.classes and ty.child_by_field_name("body") is not None:
                name = self.name_of(ty)
                if not name:
                    d = node.child_by_field_name("declarator")
                    name = collapse(self.text(d), 120) if d is not None else ""
                self.class_unit(ty, name, parents, owner, span, ty.child_by_field_name("body"), sig_node=node)
                return
        if t in spec.namespaces:
            body = self.body_of(node)
            if body is not None:
                name = self.name_of(node) or ""
                self.walk(body, [*parents, name] if name else parents, owner, False)
            return
        self.walk(node, parents, owner, in_class)

    def visit_class(self, node, parents, owner, span) -> bool:
        lang = self.language
        body = self.body_of(node)
        name = self.name_of(node)
        if lang == "go":
            ty = node.child_by_field_name("type")
            if ty is None or ty.type not in ("struct_type", "interface_type"):
                return False
            parent = node.parent
            if parent is not None and parent.type == "type_declaration" and parent.named_child_count == 1:
                span = parent
            body = ty.child_by_field_name("body") or next(
                (c for c in ty.children if c.type in ("field_declaration_list", "{")), None)
            self.class_unit(node, name, parents, owner, span, body, sig_node=span)
            return True
        if lang == "rust" and node.type == "impl_item":
            ty = node.child_by_field_name("type")
            if ty is not None and ty.type == "generic_type" and ty.child_by_field_name("type") is not None:
                ty = ty.child_by_field_name("type")
            name = collapse(self.text(ty), 120) if ty is not None else ""
        if lang in ("c", "cpp") and body is None:
            return False  # a use of the type, not its definition
        self.class_unit(node, name, parents, owner, span, body)
        return True

    def class_unit(self, node, name, parents, owner, span, body, sig_node=None):
        unit = self.emit(owner, "class", self.qualify(parents, name or "<anonymous>"), parents, span,
                         sig_node or node, body)
        if body is not None:
            self.walk(body, [*parents, name or "<anonymous>"], unit, True)

    def function_name(self, node, parents, in_class):
        lang = self.language
        kind = "method" if in_class else "function"
        quals = list(parents)
        if lang in ("c", "cpp"):
            d = node.child_by_field_name("declarator")
            while d is not None and d.type not in _C_NAME_LEAVES:
                d = d.child_by_field_name("declarator") or (d.named_children[0] if d.named_child_count else None)
            name = _c_name(self.text(d)) if d is not None else ""
            if lang == "cpp" and "::" in name and d is not None and d.type == "qualified_identifier":
                parts = name.split("::")
                quals += [p for p in parts[:-1] if p]
                name = parts[-1]
                kind = "method"
            return name, kind, quals
        name = self.name_of(node)
        if lang == "lua":
            return _lua_name(name, kind, quals)
        if node.type == "destructor_declaration":  # C#
            name = "~" + name
        if lang == "go" and node.type == "method_declaration":
            recv = node.child_by_field_name("receiver")
            rname = self.first_type_identifier(recv) if recv is not None else None
            if rname:
                quals.append(rname)
            kind = "method"
        return name, kind, quals

    def first_type_identifier(self, node):
        stack = [node]
        while stack:
            n = stack.pop()
            if n.type == "type_identifier":
                return self.text(n)
            stack.extend(reversed(n.named_children))
        return None

    # -- JavaScript / TypeScript: functions assigned to names ---------------------------------------
    def visit_js(self, node, parents, owner, in_class, span) -> bool:
        t = node.type
        if t in ("lexical_declaration", "variable_declaration"):
            decls = [c for c in node.named_children if c.type == "variable_declarator"]
            handled = False
            for d in decls:
                value = d.child_by_field_name("value")
                name_node = d.child_by_field_name("name")
                if value is None or name_node is None:
                    continue
                name = collapse(self.text(name_node), 120)
                whole = span if len(decls) == 1 else d
                if value.type in _JS_EXPR_FUNCS:
                    self.emit(owner, "method" if in_class else "function", self.qualify(parents, name), parents,
                              whole, node if len(decls) == 1 else d, value.child_by_field_name("body"))
                    handled = True
                elif value.type in ("class", "class_expression"):
                    self.class_unit(value, name, parents, owner, whole, value.child_by_field_name("body"),
                                    sig_node=node if len(decls) == 1 else d)
                    handled = True
                elif value.type == "object":
                    self.walk(value, [*parents, name], owner, True)
                    handled = True
                else:
                    self.walk(d, parents, owner, in_class)
                    handled = True
            return handled
        if t == "expression_statement":
            expr = node.named_children[0] if node.named_child_count else None
            if expr is not None and expr.type == "assignment_expression":
                left, right = expr.child_by_field_name("left"), expr.child_by_field_name("right")
                if left is not None and right is not None:
                    name = collapse(self.text(left), 120).replace(" ", "")
                    if right.type in _JS_EXPR_FUNCS:
                        self.emit(owner, "method" if in_class else "function", self.qualify(parents, name),
                                  parents, span, node, right.child_by_field_name("body"))
                        return True
                    if right.type in ("class", "class_expression"):
                        self.class_unit(right, name, parents, owner, span, right.child_by_field_name("body"),
                                        sig_node=node)
                        return True
                    if right.type == "object":
                        self.walk(right, [*parents, name], owner, True)
                        return True
            return False
        if t in ("pair", "public_field_definition", "field_definition"):
            key = (node.child_by_field_name("key") or node.child_by_field_name("name")
                   or node.child_by_field_name("property"))
            value = node.child_by_field_name("value")
            if key is not None and value is not None and value.type in _JS_EXPR_FUNCS:
                name = collapse(self.text(key), 120)
                self.emit(owner, "method" if (in_class or parents) else "function", self.qualify(parents, name),
                          parents, span, node, value.child_by_field_name("body"))
                return True
            if t == "pair" and key is not None and value is not None and value.type == "object":
                self.walk(value, [*parents, collapse(self.text(key), 120)], owner, True)
                return True
            return False
        return False

    # -- Lua: functions assigned to names --------------------------------------------------------------
    def visit_lua(self, node, parents, owner, in_class, span) -> bool:
        """`M.f = function() ... end`, `local f = function() ... end` -> function units named by the variable."""
        if node.type == "variable_declaration" and node.named_child_count == 1:
            node = node.named_children[0]
        if node.type != "assignment_statement":
            return False
        targets = [c for c in node.named_children if c.type == "variable_list"]
        values = [c for c in node.named_children if c.type == "expression_list"]
        if len(targets) != 1 or len(values) != 1 or targets[0].named_child_count != 1 \
                or values[0].named_child_count != 1 or values[0].named_children[0].type != "function_definition":
            return False
        fn = values[0].named_children[0]
        name, kind, quals = _lua_name(collapse(self.text(targets[0]), 120), "method" if in_class else "function",
                                      list(parents))
        self.emit(owner, kind, self.qualify(quals, name), quals, span, span, self.body_of(fn))
        return True


def _lua_name(text: str, kind: str, quals: list[str]):
    """`Store:find` -> method `find` of `Store`; `M.util.f` -> function `f` qualified by `M.util`."""
    text = text.replace(" ", "")
    if ":" in text or "." in text:
        if ":" in text:
            kind = "method"
        *scope, text = re.split(r"[.:]", text)
        quals = [*quals, *(p for p in scope if p)]
    return text, kind, quals


def _c_name(text: str) -> str:
    """`ns :: Cls<A, B>::method` -> `ns::Cls<A,B>::method`; a macro misread as part of the name is dropped."""
    text = re.sub(r"\s*::\s*", "::", collapse(text, 300))
    out, depth = [], 0
    for ch in text:
        depth += ch == "<"
        depth -= ch == ">" and depth > 0
        if ch == " " and depth:
            continue
        out.append(ch)
    return "".join(out).split(" ")[-1][:120]


def find_units(root, src: bytes, lines: list[str], language: str) -> list[RawUnit]:
    """Top-level units of a file (class units hold their methods and nested classes in `children`)."""
    return UnitFinder(src, lines, language).find(root)
