"""Tests for the AST code splitter (longapps.adapters.code_split)."""
from __future__ import annotations

import textwrap

import pytest

from longapps.adapters.chunk import approx_tokens
from longapps.adapters.code_split import LANGUAGES, CodeUnit, language_for, split_code


def words(texts):
    return [len(t.split()) for t in texts]


def units_by_name(units):
    return {u.name: u for u in units}


def spans(units):
    return {(u.kind, u.name, u.start, u.end) for u in units}


def check_blocks(unit: CodeUnit, source: str, budget: int, count=words):
    """Blocks are within budget, ordered, disjoint, exact slices of the source, and cover the unit's code."""
    lines = source.split("\n")
    assert unit.blocks, unit.name
    prev_end = unit.start - 1
    covered = set()
    for i, b in enumerate(unit.blocks):
        assert b.meta["index"] == i
        assert b.source == unit.path
        assert count([b.text])[0] <= budget, (unit.name, i, b.text)
        assert unit.start <= b.start <= b.end <= unit.end
        assert b.start > prev_end, "blocks overlap or are out of order"
        prev_end = b.end
        if unit.kind in ("function", "method", "window"):
            assert b.text == "\n".join(lines[b.start - 1:b.end])
        covered.update(range(b.start, b.end + 1))
    if unit.kind in ("function", "method", "window"):
        code = {n for n in range(unit.start, unit.end + 1) if lines[n - 1].strip()}
        assert code <= covered, sorted(code - covered)[:5]


# ---------------------------------------------------------------------------------------------------------
# Python

PY = '''\
"""A module."""
import os

LIMIT = 10


@cached
def free(a, b=2):
    """Add things."""
    def helper(x):
        return x * 2
    return helper(a) + b


class Store(Base):
    """Keeps items."""
    size = 0

    def __init__(self, items):
        self.items = list(items)

    async def fetch(self, key):
        for item in self.items:
            if item.key == key:
                return item
        return None

    class Meta:
        ordering = ["key"]

        def describe(self):
            return "meta"


if __name__ == "__main__":
    print(free(1))
'''


def test_python_units():
    units = split_code(PY, "pkg/store.py", count_tokens=words)
    assert spans(units) == {
        ("module", "<module>", 1, 36),
        ("function", "free", 7, 12),
        ("class", "Store", 15, 32),
        ("method", "Store.__init__", 19, 20),
        ("method", "Store.fetch", 22, 26),
        ("class", "Store.Meta", 28, 32),
        ("method", "Store.Meta.describe", 31, 32),
    }
    by = units_by_name(units)
    assert all(u.language == "python" and u.path == "pkg/store.py" for u in units)
    assert by["free"].signature == "def free(a, b=2):"
    assert by["free"].text.startswith("@cached\ndef free")
    assert "def helper" in by["free"].text  # nested function stays inside its parent
    assert by["Store.fetch"].parents == ["Store"]
    assert by["Store.Meta.describe"].parents == ["Store", "Meta"]
    assert by["Store"].signature == "class Store(Base):"
    # the class summary keeps the header, docstring, fields and method signatures, not the bodies
    cls = by["Store"].text
    assert '"""Keeps items."""' in cls and "size = 0" in cls and "def fetch(self, key):" in cls
    assert "self.items = list(items)" not in cls and "return item" not in cls
    assert "def describe" not in cls  # belongs to the nested class unit
    mod = by["<module>"].text
    assert "LIMIT = 10" in mod and 'if __name__ == "__main__":' in mod and "def free" not in mod
    assert units == sorted(units, key=lambda u: (u.start, -u.end))
    for u in units:
        check_blocks(u, PY, 200)


def gen_python(n_groups=30):
    out = ["def long_func(data, limit):", "    total = 0"]
    for i in range(n_groups):
        out += [
            f"    for item_{i} in data[{i}]:",
            f"        if item_{i} > limit and item_{i} % {i + 2} == 0:",
            f"            total += item_{i} * {i} + compute(item_{i}, limit)",
            "        else:",
            f"            total -= item_{i} - adjust(total, {i})",
            f"    log.debug('group {i} done with total %s and limit %s', total, limit)",
            "",
        ]
    out.append("    return total")
    return "\n".join(out) + "\n"


def check_long(source, path, first_line, budget=120, count=words, kind=None):
    units = split_code(source, path, max_tokens=budget, count_tokens=count)
    fn = [u for u in units if u.blocks and u.blocks[0].text.lstrip().startswith(first_line)]
    assert len(fn) == 1, [(u.kind, u.name) for u in units]
    fn = fn[0]
    if kind:
        assert fn.kind == kind
    assert len(fn.blocks) >= 3
    check_blocks(fn, source, budget, count)
    assert fn.blocks[0].start == fn.start
    # reasonably full: on average over half the budget
    sizes = count([b.text for b in fn.blocks])
    assert sum(sizes) / len(sizes) > budget / 2, sizes
    return fn


def test_python_long_function_blocks():
    src = gen_python()
    fn = check_long(src, "long.py", "def long_func(data, limit):")
    assert fn.end == len(src.rstrip("\n").split("\n"))
    # cuts fall between statements of the function body: every block after the first starts at a `for`
    for b in fn.blocks[1:]:
        assert b.text.startswith("    for item_") or b.text.startswith("    log.debug"), b.text[:40]


def test_oversized_statement_is_recursed_into():
    body = "\n".join(f"        value_{i} = transform(value_{i - 1}, {i})" for i in range(1, 80))
    src = f"def f(x):\n    if x:\n{body}\n    return x\n"
    (fn,) = [u for u in split_code(src, "a.py", max_tokens=60, count_tokens=words) if u.name == "f"]
    check_blocks(fn, src, 60)
    # the `if` header goes with the first statements of its body, the `return` with the last ones
    assert fn.blocks[0].text.startswith("def f(x):\n    if x:\n        value_1")
    assert fn.blocks[-1].text.endswith("    return x")


def test_giant_line_is_cut():
    src = "def f():\n    x = [" + ", ".join(str(i) for i in range(3000)) + "]\n    return x\n"
    (fn,) = [u for u in split_code(src, "a.py", max_tokens=100, count_tokens=words) if u.name == "f"]
    assert all(words([b.text])[0] <= 100 for b in fn.blocks)
    assert "".join(b.text for b in fn.blocks if b.start == 2) == src.split("\n")[1]


# ---------------------------------------------------------------------------------------------------------
# Java

JAVA = '''\
package com.example;

import java.util.List;

/** A store. */
public class Store<T> extends Base implements Iterable<T> {
    private final List<T> items;
    private int size = 0;

    public Store(List<T> items) {
        this.items = items;
    }

    /** Finds an item. */
    @Override
    public T find(String key) {
        for (T item : items) {
            if (item.toString().equals(key)) {
                return item;
            }
        }
        Runnable r = () -> { System.out.println(key); };
        return null;
    }

    public abstract int count();

    static class Node {
        int value;
        int twice() { return value * 2; }
    }
}

interface Shape {
    double area();
}

enum Color { RED, GREEN }
'''


def test_java_units():
    units = split_code(JAVA, "Store.java", count_tokens=words)
    assert spans(units) == {
        ("class", "Store", 5, 32),  # its Javadoc included
        ("method", "Store.Store", 10, 12),
        ("method", "Store.find", 14, 24),
        ("class", "Store.Node", 28, 31),
        ("method", "Store.Node.twice", 30, 30),
        ("class", "Shape", 34, 36),
        ("class", "Color", 38, 38),
    }
    by = units_by_name(units)
    assert by["Store.find"].text.lstrip().startswith("/** Finds an item. */")  # doc comment goes with it
    assert by["Store.find"].signature == "@Override public T find(String key)"
    assert by["Store"].signature == "public class Store<T> extends Base implements Iterable<T>"
    cls = by["Store"].text
    assert "private int size = 0;" in cls and "public T find(String key) {" in cls
    assert "public abstract int count();" in cls  # abstract methods fold into the class unit
    assert "return item;" not in cls and "/** Finds an item. */" not in cls
    assert "int twice()" not in cls
    assert by["Store.Node.twice"].parents == ["Store", "Node"]
    assert not any(u.kind == "module" for u in units)  # package + imports only
    for u in units:
        check_blocks(u, JAVA, 200)


def gen_clike(header, decl="int", n_groups=30, footer="}"):
    out = [header, f"    {decl} total = 0;"]
    for i in range(n_groups):
        out += [
            f"    for ({decl} i{i} = 0; i{i} < limit; i{i}++) {{",
            f"        if (data[i{i}] > limit && data[i{i}] % {i + 2} == 0) {{",
            f"            total += data[i{i}] * {i} + compute(data[i{i}], limit);",
            "        } else {",
            f"            total -= adjust(total, {i});",
            "        }",
            "    }",
            "",
        ]
    out += ["    return total;", footer]
    return "\n".join(out) + "\n"


def test_java_long_method_blocks():
    src = "class Big {\n" + textwrap.indent(gen_clike("public int longMethod(int[] data, int limit) {"), "    ") + "}\n"
    fn = check_long(src, "Big.java", "public int longMethod(int[] data, int limit) {", kind="method")
    assert fn.name == "Big.longMethod"
    assert fn.blocks[-1].text.rstrip().endswith("}")


# ---------------------------------------------------------------------------------------------------------
# JavaScript

JS = '''\
import fs from "fs";
const path = require("path");

export class Store extends Base {
  count = 0;
  onChange = (e) => {
    this.count++;
  };

  constructor(items) {
    super();
    this.items = items;
  }

  *keys() {
    for (const it of this.items) yield it.key;
  }
}

function find(items, key) {
  const match = (it) => it.key === key;
  return items.find(match);
}

const load = async (file) => {
  return fs.readFileSync(file);
};

exports.save = function (file, data) {
  fs.writeFileSync(file, data);
};

const api = {
  get(url) {
    return fetch(url);
  },
  post: function (url, body) {
    return fetch(url, { method: "POST", body });
  },
};

console.log(find([], "a"));
'''


def test_javascript_units():
    units = split_code(JS, "src/store.js", count_tokens=words)
    assert spans(units) == {
        ("class", "Store", 4, 18),
        ("method", "Store.onChange", 6, 8),
        ("method", "Store.constructor", 10, 13),
        ("method", "Store.keys", 15, 17),
        ("function", "find", 20, 23),
        ("function", "load", 25, 27),
        ("function", "exports.save", 29, 31),
        ("method", "api.get", 34, 36),
        ("method", "api.post", 37, 39),
        ("module", "<module>", 1, 42),
    }
    by = units_by_name(units)
    assert by["find"].signature == "function find(items, key)"
    assert by["load"].signature == "const load = async (file) =>"
    assert "count = 0;" in by["Store"].text and "this.items = items;" not in by["Store"].text
    assert 'console.log(find([], "a"));' in by["<module>"].text
    for u in units:
        check_blocks(u, JS, 200)


def test_javascript_long_function_blocks():
    src = gen_clike("function longFunc(data, limit) {", decl="let")
    check_long(src, "long.js", "function longFunc(data, limit) {", kind="function")
    src2 = gen_clike("const longArrow = (data, limit) => {", decl="let", footer="};")
    fn = check_long(src2, "long.mjs", "const longArrow", kind="function")
    assert fn.name == "longArrow"


# ---------------------------------------------------------------------------------------------------------
# TypeScript

TS = '''\
import { Item } from "./item";

export interface Repo<T> {
  get(id: string): T | undefined;
}

@Injectable()
export class MemoryRepo<T extends Item> implements Repo<T> {
  private items = new Map<string, T>();

  get(id: string): T | undefined {
    return this.items.get(id);
  }

  abstract close(): void;
}

export function makeRepo<T extends Item>(items: T[]): MemoryRepo<T> {
  const repo = new MemoryRepo<T>();
  items.forEach((it) => repo.add(it));
  return repo;
}

namespace util {
  export const twice = (n: number): number => n * 2;
}
'''


def test_typescript_units():
    units = split_code(TS, "repo.ts", count_tokens=words)
    assert spans(units) == {
        ("class", "Repo", 3, 5),
        ("class", "MemoryRepo", 7, 16),
        ("method", "MemoryRepo.get", 11, 13),
        ("function", "makeRepo", 18, 22),
        ("function", "util.twice", 25, 25),
    }  # no module unit: imports and the namespace's braces only
    by = units_by_name(units)
    assert by["MemoryRepo"].text.startswith("@Injectable()")
    assert by["makeRepo"].signature == "function makeRepo<T extends Item>(items: T[]): MemoryRepo<T>"
    assert by["util.twice"].parents == ["util"]
    assert all(u.language == "typescript" for u in units)
    tsx = split_code("export const App = () => {\n  return <div>hi</div>;\n};\n", "app.tsx")
    assert [(u.language, u.kind, u.name) for u in tsx] == [("tsx", "function", "App")]
    dec = split_code("class A {\n  @action.bound\n  async load(): Promise<void> {\n    return;\n  }\n}\n", "a.ts")
    assert spans(dec) == {("class", "A", 1, 6), ("method", "A.load", 2, 5)}
    assert units_by_name(dec)["A"].text == "class A {\n  async load(): Promise<void> {\n}"


def test_typescript_long_function_blocks():
    src = gen_clike("export function longFunc(data: number[], limit: number): number {", decl="let")
    check_long(src, "long.ts", "export function longFunc", kind="function")


# ---------------------------------------------------------------------------------------------------------
# Go

GO = '''\
package store

import "fmt"

var defaultSize = 10

// Store keeps items.
type Store struct {
	items []Item
	size  int
}

type Getter interface {
	Get(key string) Item
}

// Get finds an item.
func (s *Store) Get(key string) Item {
	for _, it := range s.items {
		if it.Key == key {
			return it
		}
	}
	return Item{}
}

func New(items []Item) *Store {
	cmp := func(a, b Item) bool { return a.Key < b.Key }
	sortItems(items, cmp)
	return &Store{items: items}
}
'''


def test_go_units():
    units = split_code(GO, "store.go", count_tokens=words)
    assert spans(units) == {
        ("module", "<module>", 1, 5),  # package + import + var
        ("class", "Store", 7, 11),
        ("class", "Getter", 13, 15),
        ("method", "Store.Get", 17, 25),
        ("function", "New", 27, 31),
    }
    by = units_by_name(units)
    assert by["Store.Get"].parents == ["Store"]
    assert by["Store.Get"].signature == "func (s *Store) Get(key string) Item"
    assert by["Store"].signature == "type Store struct"
    for u in units:
        check_blocks(u, GO, 200)


def test_go_long_function_blocks():
    out = ["func LongFunc(data []int, limit int) int {", "\ttotal := 0"]
    for i in range(30):
        out += [f"\tfor i{i} := 0; i{i} < limit; i{i}++ {{",
                f"\t\tif data[i{i}] > limit && data[i{i}]%{i + 2} == 0 {{",
                f"\t\t\ttotal += data[i{i}]*{i} + compute(data[i{i}], limit)",
                "\t\t} else {", f"\t\t\ttotal -= adjust(total, {i})", "\t\t}", "\t}", ""]
    out += ["\treturn total", "}"]
    src = "package main\n\n" + "\n".join(out) + "\n"
    check_long(src, "long.go", "func LongFunc", kind="function")


# ---------------------------------------------------------------------------------------------------------
# Rust

RUST = '''\
use std::collections::HashMap;

/// A store.
pub struct Store<T> {
    items: HashMap<String, T>,
}

impl<T: Clone> Store<T> {
    pub fn new() -> Self {
        Store { items: HashMap::new() }
    }

    pub fn get(&self, key: &str) -> Option<T> {
        let f = |k: &str| self.items.get(k).cloned();
        f(key)
    }
}

pub trait Named {
    fn name(&self) -> String;
    fn shout(&self) -> String {
        self.name().to_uppercase()
    }
}

fn main() {
    let s: Store<i32> = Store::new();
    println!("{:?}", s.get("a"));
}

mod inner {
    pub fn helper() -> u8 { 1 }
}
'''


def test_rust_units():
    units = split_code(RUST, "lib.rs", count_tokens=words)
    assert spans(units) == {
        ("class", "Store", 3, 6),
        ("class", "Store", 8, 17),  # the impl block
        ("method", "Store.new", 9, 11),
        ("method", "Store.get", 13, 16),
        ("class", "Named", 19, 24),
        ("method", "Named.shout", 21, 23),
        ("function", "main", 26, 29),
        ("function", "inner.helper", 32, 32),
    }
    by = units_by_name(units)
    assert by["Store.get"].parents == ["Store"]
    assert by["Named"].text.count("fn name(&self) -> String;") == 1
    assert by["main"].signature == "fn main()"
    for u in units:
        check_blocks(u, RUST, 200)


def test_rust_long_function_blocks():
    out = ["fn long_func(data: &[i64], limit: i64) -> i64 {", "    let mut total = 0;"]
    for i in range(30):
        out += [f"    for x{i} in data.iter() {{",
                f"        if *x{i} > limit && *x{i} % {i + 2} == 0 {{",
                f"            total += *x{i} * {i} + compute(*x{i}, limit);",
                "        } else {", f"            total -= adjust(total, {i});", "        }", "    }", ""]
    out += ["    total", "}"]
    check_long("\n".join(out) + "\n", "long.rs", "fn long_func", kind="function")


# ---------------------------------------------------------------------------------------------------------
# C

C = '''\
#include <stdio.h>
#include "store.h"

#define MAX 10

struct item {
    const char *key;
    int value;
};

typedef struct {
    struct item *items;
    int size;
} store_t;

static int count = 0;

/* Find an item. */
struct item *find(store_t *s, const char *key)
{
    for (int i = 0; i < s->size; i++) {
        if (strcmp(s->items[i].key, key) == 0)
            return &s->items[i];
    }
    return NULL;
}

int main(void) {
    printf("%d\\n", count);
    return 0;
}
'''


def test_c_units():
    units = split_code(C, "store.c", count_tokens=words)
    assert spans(units) == {
        ("module", "<module>", 1, 16),
        ("class", "item", 6, 9),
        ("class", "store_t", 11, 14),
        ("function", "find", 18, 26),
        ("function", "main", 28, 31),
    }
    by = units_by_name(units)
    assert by["find"].signature == "struct item *find(store_t *s, const char *key)"
    assert by["find"].text.startswith("/* Find an item. */")
    for u in units:
        check_blocks(u, C, 200)


def test_c_long_function_blocks():
    check_long(gen_clike("static int long_func(int *data, int limit)\n{"), "long.c", "static int long_func",
               kind="function")


# ---------------------------------------------------------------------------------------------------------
# C++

CPP = '''\
#include <vector>

namespace shop {

class Store : public Base {
public:
    Store() : size_(0) {}
    int find(const std::string& key) const;
    template <typename F>
    void each(F f) {
        for (auto& it : items_) f(it);
    }
private:
    std::vector<Item> items_;
    int size_;
};

int Store::find(const std::string& key) const {
    auto match = [&](const Item& it) { return it.key == key; };
    return std::count_if(items_.begin(), items_.end(), match);
}

}  // namespace shop

int main() {
    shop::Store s;
    return s.find("a");
}
'''


def test_cpp_units():
    units = split_code(CPP, "store.cpp", count_tokens=words)
    assert spans(units) == {
        ("class", "shop::Store", 5, 16),
        ("method", "shop::Store::Store", 7, 7),
        ("method", "shop::Store::each", 9, 12),
        ("method", "shop::Store::find", 18, 21),
        ("function", "main", 25, 28),
    }
    by = units_by_name(units)
    assert by["shop::Store::find"].parents == ["shop", "Store"]
    assert by["shop::Store::each"].text.lstrip().startswith("template <typename F>")
    cls = by["shop::Store"].text
    assert "int find(const std::string& key) const;" in cls and "std::vector<Item> items_;" in cls
    assert "f(it);" not in cls
    for u in units:
        check_blocks(u, CPP, 200)


def test_cpp_long_function_blocks():
    src = "namespace a {\n" + gen_clike("int Big::longFunc(const int* data, int limit) {") + "}\n"
    fn = check_long(src, "long.cc", "int Big::longFunc", kind="method")
    assert fn.name == "a::Big::longFunc"


# ---------------------------------------------------------------------------------------------------------
# Ruby

RUBY = '''\
require "json"

module Shop
  # A store of items.
  class Store < Base
    attr_reader :items

    def initialize(items)
      @items = items
    end

    # Find an item.
    def find(key)
      @items.find { |it| it.key == key }
    end

    def self.build(data)
      new(data.map { |d| Item.new(d) })
    end

    def reset; end
  end
end

def helper(x)
  x * 2
end

puts helper(3)
'''


def test_ruby_units():
    units = split_code(RUBY, "store.rb", count_tokens=words)
    assert spans(units) == {
        ("module", "<module>", 1, 29),  # require ... puts
        ("class", "Shop", 3, 23),
        ("class", "Shop.Store", 4, 22),  # its comment sits inside `module`, before the body
        ("method", "Shop.Store.initialize", 8, 10),
        ("method", "Shop.Store.find", 12, 15),
        ("method", "Shop.Store.build", 17, 19),
        ("method", "Shop.Store.reset", 21, 21),  # an empty method is still a method
        ("function", "helper", 25, 27),
    }
    by = units_by_name(units)
    assert by["Shop.Store.find"].parents == ["Shop", "Store"]
    assert by["Shop.Store.find"].text.startswith("    # Find an item.")
    assert by["Shop"].signature == "module Shop"
    cls = by["Shop.Store"].text
    assert "attr_reader :items" in cls and "    def find(key)" in cls and "@items = items" not in cls
    assert "# Find an item." not in cls
    for u in units:
        assert u.language == "ruby"
        check_blocks(u, RUBY, 200)


def test_ruby_long_method_blocks():
    out = ["class Big", "  def long_method(data, limit)", "    total = 0"]
    for i in range(30):
        out += [f"    data.each do |x{i}|",
                f"      if x{i} > limit && x{i} % {i + 2} == 0",
                f"        total += x{i} * {i} + compute(x{i}, limit)",
                "      else", f"        total -= adjust(total, {i})", "      end", "    end", ""]
    out += ["    total", "  end", "end"]
    src = "\n".join(out) + "\n"
    fn = check_long(src, "big.rb", "def long_method(data, limit)", kind="method")
    assert fn.name == "Big.long_method"
    # cut between the statements of the method body, `end`s stay with what they close
    for b in fn.blocks[1:]:
        assert b.text.startswith("    data.each do |x"), b.text[:40]
        assert b.text.rstrip().endswith("end")


# ---------------------------------------------------------------------------------------------------------
# PHP

PHP = '''\
<?php
namespace App\\Shop;

use App\\Models\\Item;

interface Finder
{
    public function find(string $key): ?Item;
}

/**
 * A store of items.
 */
class Store implements Finder
{
    private array $items = [];

    public function __construct(array $items)
    {
        $this->items = $items;
    }

    public function find(string $key): ?Item
    {
        foreach ($this->items as $it) {
            if ($it->key === $key) {
                return $it;
            }
        }
        return null;
    }
}

trait Greets
{
    public function hello(): string { return "hi"; }
}

function helper($x)
{
    return $x * 2;
}

echo helper(3);
'''


def test_php_units():
    units = split_code(PHP, "Store.php", count_tokens=words)
    ns = "App\\Shop"
    assert spans(units) == {
        ("module", "<module>", 1, 44),  # `<?php`, namespace, use + echo
        ("class", f"{ns}.Finder", 6, 9),
        ("class", f"{ns}.Store", 11, 32),
        ("method", f"{ns}.Store.__construct", 18, 21),
        ("method", f"{ns}.Store.find", 23, 31),
        ("class", f"{ns}.Greets", 34, 37),
        ("method", f"{ns}.Greets.hello", 36, 36),
        ("function", f"{ns}.helper", 39, 42),
    }
    by = units_by_name(units)
    assert by[f"{ns}.Store.find"].parents == [ns, "Store"]
    assert by[f"{ns}.Store.find"].signature == "public function find(string $key): ?Item"
    assert by[f"{ns}.Finder"].text.count("public function find(string $key): ?Item;") == 1  # bodiless: folded
    assert by[f"{ns}.Store"].text.startswith("/**\n * A store of items.")
    assert by["<module>"].text.endswith("use App\\Models\\Item;\n\necho helper(3);")
    # `<?php`, a namespace and imports alone make no module unit
    assert {u.kind for u in split_code(PHP.replace("echo helper(3);", ""), "Store.php", count_tokens=words)} == {
        "class", "method", "function"}
    for u in units:
        check_blocks(u, PHP, 200)


# ---------------------------------------------------------------------------------------------------------
# C#

CSHARP = '''\
using System;
using System.Collections.Generic;

namespace Shop.Core
{
    /// <summary>A store of items.</summary>
    public class Store : IStore
    {
        private readonly List<Item> _items;

        public Store(List<Item> items)
        {
            _items = items;
        }

        public Item Find(string key)
        {
            foreach (var it in _items)
            {
                if (it.Key == key) return it;
            }
            return null;
        }

        public int Count => _items.Count;

        public int Twice(int x) => x * 2;
    }

    public interface IStore
    {
        Item Find(string key);
    }

    public record Item(string Key);
}
'''


def test_csharp_units():
    units = split_code(CSHARP, "Store.cs", count_tokens=words)
    assert spans(units) == {
        ("class", "Shop.Core.Store", 6, 28),
        ("method", "Shop.Core.Store.Store", 11, 14),
        ("method", "Shop.Core.Store.Find", 16, 23),
        ("method", "Shop.Core.Store.Twice", 27, 27),
        ("class", "Shop.Core.IStore", 30, 33),
        ("class", "Shop.Core.Item", 35, 35),
    }
    by = units_by_name(units)
    assert by["Shop.Core.Store.Find"].parents == ["Shop.Core", "Store"]
    assert by["Shop.Core.Store.Find"].signature == "public Item Find(string key)"
    assert "public int Count => _items.Count;" in by["Shop.Core.Store"].text
    assert "foreach" not in by["Shop.Core.Store"].text
    for u in units:
        check_blocks(u, CSHARP, 200)
    # a file-scoped namespace qualifies what follows it
    src = ("namespace Flat;\n\npublic static class Helpers\n{\n"
           "    public static int Helper(int x) { return x * 2; }\n}\n")
    assert spans(split_code(src, "h.cs", count_tokens=words)) == {
        ("class", "Flat.Helpers", 3, 6), ("method", "Flat.Helpers.Helper", 5, 5)}


# ---------------------------------------------------------------------------------------------------------
# Kotlin

KOTLIN = '''\
package shop

import kotlin.math.max

/** A store of items. */
class Store(private val items: List<Item>) : Finder {
    val size: Int get() = items.size

    override fun find(key: String): Item? {
        for (it in items) {
            if (it.key == key) return it
        }
        return null
    }

    companion object {
        fun empty(): Store = Store(emptyList())
    }
}

interface Finder {
    fun find(key: String): Item?
}

object Registry {
    fun register(s: Store) {
        println(s)
    }
}

fun helper(x: Int): Int {
    return x * 2
}
'''


def test_kotlin_units():
    units = split_code(KOTLIN, "Store.kt", count_tokens=words)
    assert spans(units) == {
        ("class", "Store", 5, 19),
        ("method", "Store.find", 9, 14),
        ("method", "Store.empty", 17, 17),  # companion object members are the class's
        ("class", "Finder", 21, 23),
        ("class", "Registry", 25, 29),
        ("method", "Registry.register", 26, 28),
        ("function", "helper", 31, 33),
    }
    by = units_by_name(units)
    assert by["Store.find"].signature == "override fun find(key: String): Item?"
    assert by["Finder"].text == "interface Finder {\n    fun find(key: String): Item?\n}"
    assert "return null" not in by["Store"].text
    for u in units:
        check_blocks(u, KOTLIN, 200)


# ---------------------------------------------------------------------------------------------------------
# Scala

SCALA = '''\
package shop

import scala.collection.mutable

/** A store of items. */
class Store(items: Seq[Item]) extends Finder {
  private val index = items.map(i => i.key -> i).toMap

  def find(key: String): Option[Item] = {
    val hit = index.get(key)
    hit.orElse(None)
  }
}

trait Finder {
  def find(key: String): Option[Item]
}

object Store {
  def empty: Store = new Store(Nil)
}

def helper(x: Int): Int =
  x * 2

case class Item(key: String)
'''


def test_scala_units():
    units = split_code(SCALA, "Store.scala", count_tokens=words)
    assert spans(units) == {
        ("class", "Store", 5, 13),
        ("method", "Store.find", 9, 12),
        ("class", "Finder", 15, 17),
        ("class", "Store", 19, 21),  # the companion object
        ("method", "Store.empty", 20, 20),
        ("function", "helper", 23, 24),  # an indented body: the blank line after it is not its own
        ("class", "Item", 26, 26),
    }
    by = units_by_name(units)
    assert by["Store.find"].signature == "def find(key: String): Option[Item] ="
    assert by["Finder"].text.count("def find(key: String): Option[Item]") == 1
    for u in units:
        check_blocks(u, SCALA, 200)


# ---------------------------------------------------------------------------------------------------------
# Swift

SWIFT = '''\
import Foundation

/// A store of items.
class Store: Finder {
    private var items: [Item] = []

    init(items: [Item]) {
        self.items = items
    }

    /// Find an item.
    func find(key: String) -> Item? {
        for it in items where it.key == key {
            return it
        }
        return nil
    }
}

protocol Finder {
    func find(key: String) -> Item?
}

struct Item {
    let key: String
}

extension Store {
    func twice(_ x: Int) -> Int { x * 2 }
}

func helper(_ x: Int) -> Int {
    return x * 2
}
'''


def test_swift_units():
    units = split_code(SWIFT, "Store.swift", count_tokens=words)
    assert spans(units) == {
        ("class", "Store", 3, 18),
        ("method", "Store.init", 7, 9),
        ("method", "Store.find", 11, 17),
        ("class", "Finder", 20, 22),
        ("class", "Item", 24, 26),   # struct
        ("class", "Store", 28, 30),  # extension
        ("method", "Store.twice", 29, 29),
        ("function", "helper", 32, 34),
    }
    by = units_by_name(units)
    assert by["Store.find"].text.startswith("    /// Find an item.")
    assert by["Store.find"].signature == "func find(key: String) -> Item?"
    for u in units:
        check_blocks(u, SWIFT, 200)


# ---------------------------------------------------------------------------------------------------------
# Lua

LUA = '''\
local M = {}

local Store = {}
Store.__index = Store

function Store.new(items)
  local self = setmetatable({}, Store)
  self.items = items
  return self
end

-- Find an item.
function Store:find(key)
  for _, it in ipairs(self.items) do
    if it.key == key then
      return it
    end
  end
  return nil
end

local function helper(x)
  return x * 2
end

M.twice = function(x) return helper(x) end

return M
'''


def test_lua_units():
    units = split_code(LUA, "store.lua", count_tokens=words)
    assert spans(units) == {
        ("module", "<module>", 1, 28),
        ("function", "Store.new", 6, 10),
        ("method", "Store.find", 12, 20),  # `:` -> a method
        ("function", "helper", 22, 24),
        ("function", "M.twice", 26, 26),
    }
    by = units_by_name(units)
    assert by["Store.find"].parents == ["Store"]
    assert by["Store.find"].text.startswith("-- Find an item.")
    assert by["helper"].signature == "local function helper(x)"
    for u in units:
        check_blocks(u, LUA, 200)


# ---------------------------------------------------------------------------------------------------------
# Bash

BASH = '''\
#!/usr/bin/env bash
set -euo pipefail

LOG=/tmp/build.log

# Print a message.
log() {
  echo "$(date) $*" >> "$LOG"
}

function build {
  local target=$1
  for f in src/*.c; do
    gcc -c "$f" -o "${f%.c}.o"
  done
}

log "start"
build all
'''


def test_bash_units():
    units = split_code(BASH, "build.sh", count_tokens=words)
    assert spans(units) == {
        ("module", "<module>", 1, 19),
        ("function", "log", 6, 9),
        ("function", "build", 11, 16),
    }
    by = units_by_name(units)
    assert by["build"].signature == "function build"
    assert 'log "start"' in by["<module>"].text and "gcc" not in by["<module>"].text
    for u in units:
        check_blocks(u, BASH, 200)


def test_grammar_import_failure_falls_back_to_windows(monkeypatch):
    from longapps.adapters.code import languages

    monkeypatch.setitem(languages._GRAMMARS, "lua", ("no_such_grammar_module", "language"))
    monkeypatch.setattr(languages, "_languages", {})
    monkeypatch.setattr(languages, "_failed", set())
    monkeypatch.setattr(languages._local, "parsers", {})
    units = split_code(LUA, "store.lua", count_tokens=words)
    assert [(u.kind, u.language, u.start, u.end) for u in units] == [("window", "lua", 1, 28)]


# ---------------------------------------------------------------------------------------------------------
# languages, fallbacks, robustness

def test_language_table():
    assert language_for("a/b/C.java") == "java"
    assert language_for("x.TSX") == "tsx"
    assert language_for("x.hpp") == "cpp" and language_for("x.h") == "c"
    assert language_for("README.md") is None and language_for("Makefile") is None
    assert LANGUAGES[".cjs"] == "javascript"
    assert [language_for(f"x{e}") for e in (".rb", ".php", ".cs", ".kt", ".kts", ".scala", ".sc", ".swift",
                                            ".lua", ".sh", ".bash")] == [
        "ruby", "php", "csharp", "kotlin", "kotlin", "scala", "scala", "swift", "lua", "bash", "bash"]


def test_unknown_extension_gives_windows():
    text = "\n".join(f"line {i} with some words in it" for i in range(150))
    units = split_code(text, "notes.txt", max_tokens=50, count_tokens=words)
    assert [u.kind for u in units] == ["window"] * 3
    assert [(u.start, u.end) for u in units] == [(1, 60), (61, 120), (121, 150)]
    assert units[0].name == "<lines 1-60>" and units[0].language == "text"
    for u in units:
        check_blocks(u, text, 50)
        assert len(u.blocks) >= 5  # 7 words a line, 50 a block


def test_explicit_language_overrides_extension():
    units = split_code("def f():\n    return 1\n", "snippet.txt", language="python")
    assert [(u.kind, u.name, u.language) for u in units] == [("function", "f", "python")]


def test_empty_and_blank():
    assert split_code("", "a.py") == []
    assert split_code("\n\n   \n", "a.java") == []
    assert split_code("", "a.unknown") == []


@pytest.mark.parametrize("path", ["a.py", "A.java", "a.js", "a.ts", "a.go", "a.rs", "a.c", "a.cpp", "a.bin",
                                  "a.rb", "a.php", "A.cs", "A.kt", "A.scala", "A.swift", "a.lua", "a.sh"])
def test_garbage_does_not_raise(path):
    import random

    rng = random.Random(7)
    garbage = "".join(chr(rng.choice([rng.randrange(0, 0x250), 0xFFFD, 10, 10, 32, 123, 125]))
                      for _ in range(20000))
    units = split_code(garbage, path, max_tokens=64, count_tokens=words)
    for u in units:
        assert u.blocks
        assert all(words([b.text])[0] <= 64 for b in u.blocks)


@pytest.mark.parametrize("path", ["a.py", "A.java", "a.js", "a.go", "a.rs", "a.c", "a.cpp", "a.rb", "A.cs", "A.kt",
                                  "A.scala", "A.swift", "a.lua"])
def test_mostly_parse_errors_falls_back_to_windows(path):
    text = "\n".join(f"}}}}}} ) ] {i} @@ ### ((( " for i in range(100))
    units = split_code(text, path, max_tokens=64, count_tokens=words)
    assert units and all(u.kind == "window" for u in units)
    assert units[0].language == language_for(path)
    for u in units:
        check_blocks(u, text, 64)


def test_default_counter_and_odd_inputs():
    # no count_tokens: the approximate counter is used
    units = split_code("class A:\n    def f(self):\n        return 1\n", "a.py")
    assert [u.name for u in units] == ["A", "A.f"]
    # CRLF line ends, a single huge line, no trailing newline
    crlf = "def f():\r\n    return 1\r\n"
    (u,) = split_code(crlf, "a.py")
    assert u.text == "def f():\n    return 1" and (u.start, u.end) == (1, 2)
    huge = "x = '" + "ab " * 20000 + "'"
    units = split_code(huge, "a.py", max_tokens=100, count_tokens=words)
    assert units and all(words([b.text])[0] <= 100 for u in units for b in u.blocks)


def test_header_file_read_as_cpp_when_c_fails():
    src = textwrap.dedent('''\
        #pragma once
        namespace geo {
        template <typename T>
        class Point {
        public:
            T norm() const { return x * x + y * y; }
        private:
            T x, y;
        };
        }  // namespace geo
        ''')
    units = split_code(src, "point.h", count_tokens=words)
    assert {(u.language, u.kind, u.name) for u in units} == {
        ("cpp", "class", "geo::Point"), ("cpp", "method", "geo::Point::norm")}
    # plain C headers stay C
    (u,) = split_code("struct s { int a; };\n", "s.h")
    assert (u.language, u.kind, u.name) == ("c", "class", "s")


def test_non_additive_counter_is_respected():
    # counts characters, and line breaks dearly: per-line sums under-estimate joined blocks
    def chars(texts):
        return [len(t) // 4 + 3 * t.count("\n") for t in texts]

    src = gen_python(20)
    units = split_code(src, "long.py", max_tokens=150, count_tokens=chars)
    (fn,) = units
    assert len(fn.blocks) > 3
    check_blocks(fn, src, 150, count=chars)


def test_count_tokens_is_batched():
    calls = []

    def counting(texts):
        calls.append(len(texts))
        return words(texts)

    split_code(gen_python(30) + PY, "a.py", max_tokens=100, count_tokens=counting)
    assert len(calls) <= 3 and max(calls) > 50  # one call for all lines, maybe one to verify full blocks


def test_unit_with_errors_keeps_ast_units():
    src = PY + "\n\ndef broken(:\n    pass\n"
    names = {u.name for u in split_code(src, "a.py", count_tokens=words)}
    assert {"free", "Store.fetch", "Store.Meta.describe"} <= names


def test_minified_code_units_take_their_own_text():
    js = ";".join(f"function f{i}(a,b){{var c=a+b;if(c>{i}){{return c*{i}}}else{{return g(a,b,{i})}}}}"
                  for i in range(300))
    js += ";function big(){" + ";".join(f"x{i}=y{i}+z{i}" for i in range(400)) + "}"
    units = split_code(js, "app.min.js", max_tokens=50, count_tokens=approx_tokens)
    by = units_by_name(units)
    assert len(units) == 301
    assert by["f7"].text == "function f7(a,b){var c=a+b;if(c>7){return c*7}else{return g(a,b,7)}}"
    assert [b.text for b in by["f7"].blocks] == [by["f7"].text]
    assert len(by["big"].blocks) > 10 and "".join(b.text for b in by["big"].blocks) == by["big"].text
    assert all(approx_tokens([b.text])[0] <= 50 for u in units for b in u.blocks)


def test_class_summary_keeps_whole_multiline_headers_only():
    src = textwrap.dedent('''\
        class A:
            def f(self, a,
                  *args):
                # a comment opening the body
                return 1

            @property
            def g(self):
                return 2
        ''')
    by = units_by_name(split_code(src, "a.py", count_tokens=words))
    assert by["A"].text == "class A:\n    def f(self, a,\n          *args):\n\n    def g(self):"
    assert by["A.g"].text.startswith("    @property") and (by["A.g"].start, by["A.g"].end) == (7, 9)
