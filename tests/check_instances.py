#!/usr/bin/env python3
"""Keeps include/marrow/instances.hpp in step with the library.

instances.hpp lists every public function template of namespace marrow in the
headers below (ops, losses, initializers, optimizer helpers) so that the build
instantiates each once for float and double (cmake/instances/*.cpp) and every
other translation unit, compiled with MARROW_EXTERN_TEMPLATES, declares them
extern instead of compiling its own copy (most of a test file's compile time
is template instantiation and code generation).

  tests/check_instances.py          exit 1 naming each signature missing or stale (a ctest case)
  tests/check_instances.py --write  rewrite instances.hpp from the headers
"""
import os, re, sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
HEADERS = ["ops/*.hpp", "loss.hpp", "init.hpp", "optim.hpp"]

def strip_comments(s):
    s = re.sub(r'//[^\n]*', '', s)
    return re.sub(r'/\*.*?\*/', '', s, flags=re.S)

def split_params(p):
    out, depth, cur = [], 0, ''
    for c in p:
        if c in '<([{': depth += 1
        if c in '>)]}': depth -= 1
        if c == ',' and depth == 0:
            out.append(cur); cur = ''
        else: cur += c
    if cur.strip(): out.append(cur)
    return [x.strip() for x in out]

def param_type(p):
    depth = 0
    for i, c in enumerate(p):  # drop a default value
        if c in '<([{': depth += 1
        if c in '>)]}': depth -= 1
        if c == '=' and depth == 0:
            p = p[:i].strip(); break
    m = re.match(r'^(.*?[\s&*>])([A-Za-z_]\w*)$', p)  # drop the parameter's name
    if m and m.group(1).strip() not in ('', 'const', 'unsigned'):
        return m.group(1).strip()
    return p

def scan(path):
    s = strip_comments(open(path).read())
    res, i, stack = [], 0, []  # stack of scope kinds: 'ns:NAME' or 'other'
    tmpl = re.compile(r'template\s*<\s*class T\s*>\s*(?:inline\s+)?([^;{}()]*?)\b([a-z_]\w*)\s*\(')
    while i < len(s):
        c = s[i]
        if s.startswith('namespace', i) and (i == 0 or not s[i-1].isalnum()):
            m = re.match(r'namespace\s+([\w:]+)\s*\{', s[i:])
            if m:
                stack.append('ns:' + m.group(1)); i += m.end(); continue
        if s.startswith('template', i) and stack and stack[-1] == 'ns:marrow' and all(x.startswith('ns:') for x in stack):
            m = tmpl.match(s, i)
            if m and 'T' in m.group(1):
                j, depth = m.end(), 1
                while depth:
                    depth += {'(': 1, ')': -1}.get(s[j], 0); j += 1
                params = s[m.end():j - 1]
                k = j
                while s[k].isspace(): k += 1
                if s[k] == '{':
                    sig = '%s %s(%s)' % (' '.join(m.group(1).split()), m.group(2),
                                         ', '.join(param_type(' '.join(p.split())) for p in split_params(params)))
                    res.append(sig)
        if c == '{': stack.append('other')
        elif c == '}':
            if stack: stack.pop()
        i += 1
    return res


def signatures():
    import glob
    out = []
    for pat in HEADERS:
        for path in sorted(glob.glob(os.path.join(ROOT, "include/marrow", pat))):
            rel = os.path.relpath(path, os.path.join(ROOT, "include/marrow"))
            out += [(rel, s) for s in scan(path)]
    return out

def render(sigs):
    lines = ["#pragma once",
             "// Every public function template of the library's ops, losses, initializers and",
             "// optimizer helpers, named once so that a build can instantiate each a single time",
             "// per element type. cmake/instances/{float,double}.cpp instantiate them; a translation",
             "// unit compiled with MARROW_EXTERN_TEMPLATES (our tests and examples) declares them",
             "// extern and links those objects instead of compiling its own copies. A program that",
             "// defines nothing sees plain header-only templates.",
             "// Written by tests/check_instances.py --write; the ctest case instances.up_to_date",
             "// fails when a header gains, loses or changes a signature that this list does not.",
             '#include "marrow.hpp"',
             "",
             "// PREFIX is `template` (instantiate) or `extern template` (declare).",
             "#define MARROW_INSTANCES(PREFIX, T) \\"]
    last = None
    for rel, s in sigs:
        if rel != last:
            lines.append("  /* %s */ \\" % rel)
            last = rel
        m = re.match(r'^(.*?)\b([a-z_]\w*)\((.*)\)$', s)
        lines.append("  PREFIX %s%s<T>(%s); \\" % (m.group(1), m.group(2), m.group(3)))
    lines[-1] = lines[-1][:-2]
    lines += ["",
              "#if defined(MARROW_EXTERN_TEMPLATES) && !defined(MARROW_INSTANTIATING)",
              "namespace marrow {",
              "MARROW_INSTANCES(extern template, float)",
              "MARROW_INSTANCES(extern template, double)",
              "}  // namespace marrow",
              "#endif",
              ""]
    return "\n".join(lines)

def main():
    path = os.path.join(ROOT, "include/marrow/instances.hpp")
    want = render(signatures())
    if "--write" in sys.argv:
        open(path, "w").write(want)
        print("check_instances: wrote", os.path.relpath(path, ROOT))
        return 0
    have = open(path).read() if os.path.exists(path) else ""
    if have == want:
        print("check_instances: instances.hpp names every public template (%d)" % len(signatures()))
        return 0
    a = set(l.strip() for l in have.splitlines() if "PREFIX" in l and "define" not in l)
    b = set(l.strip() for l in want.splitlines() if "PREFIX" in l and "define" not in l)
    for l in sorted(b - a): print("missing:", l)
    for l in sorted(a - b): print("stale:  ", l)
    print("check_instances: include/marrow/instances.hpp is out of date; run tests/check_instances.py --write")
    return 1

if __name__ == "__main__":
    sys.exit(main())
