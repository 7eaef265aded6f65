"""The layering of shared/src, checked: run by infra/test.sh.

    python3 infra/layers.py

Each top-level module of the shared crate sits in a layer; a module may import (`crate::x`,
outside its test module) only from its own layer or below, and no two modules may import each
other, directly or round a loop. Breaks allowed for a while would be listed in KNOWN (empty today); the check fails on any
other, and on a KNOWN one that is gone (so the list only shrinks).
"""
import collections
import os
import re
import sys

LAYERS = [
    ["domain"],
    ["model", "keys", "token", "cursor", "device", "clock", "env", "identity", "egress"],
    ["store", "cache", "logout", "telemetry", "config", "table", "error", "reload", "jwks", "breaker", "queue", "idp"],
    ["service"],
    ["http", "testing", "runtime"],
]
# What the crate root re-exports, by the module that defines it.
REEXPORTS = {"StoreError": "store", "DynamoStore": "store", "SessionStore": "store", "ServiceError": "error",
             "Config": "config", "Policy": "config"}
# Known breaks, to remove: an upward import ("a -> b") or a loop of modules that reach one
# another. None today; the check fails on any new one.
KNOWN = set()

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "shared", "src")
layer = {m: i for i, ms in enumerate(LAYERS) for m in ms}
edges = collections.defaultdict(set)
for dirpath, _, files in os.walk(ROOT):
    for f in files:
        if not f.endswith(".rs"):
            continue
        rel = os.path.relpath(os.path.join(dirpath, f), ROOT)
        top = rel.split(os.sep)[0].removesuffix(".rs")
        if top == "lib":
            continue
        text = open(os.path.join(dirpath, f)).read()
        tests = re.search(r"#\[cfg\(test\)\]\s*\n\s*mod \w+", text)
        if tests:
            text = text[: tests.start()]
        for name in re.findall(r"crate::(\w+)", text):
            target = REEXPORTS.get(name, name)
            if target != top:
                edges[top].add(target)

found, problems = set(), []
for a in sorted(edges):
    if a not in layer:
        problems.append(f"{a}: not in any layer (add it to LAYERS)")
        continue
    for b in sorted(edges[a]):
        if b not in layer:
            problems.append(f"{b} (imported by {a}): not in any layer")
        elif layer[b] > layer[a]:
            found.add(f"{a} -> {b}")
# Loops: each set of two or more modules that all reach one another, as one finding.
def reach(a):
    seen, todo = set(), [a]
    while todo:
        for y in edges.get(todo.pop(), ()):
            if y not in seen:
                seen.add(y)
                todo.append(y)
    return seen
reachable = {m: reach(m) for m in edges}
for a in sorted(edges):
    loop = sorted({a} | {b for b in reachable[a] if a in reachable.get(b, set())})
    if len(loop) > 1 and loop[0] == a:
        found.add("loop: " + ", ".join(loop))

for f in sorted(found - KNOWN):
    problems.append(f"{f}: breaks the layering (LAYERS in infra/layers.py)")
for f in sorted(KNOWN - found):
    problems.append(f"{f}: listed in KNOWN but gone; take it off the list")
if problems:
    print("layering:", *problems, sep="\n  ")
    sys.exit(1)
print(f"layering: {sum(len(v) for v in edges.values())} imports between {len(edges)} modules; "
      f"{len(KNOWN)} known breaks left ({', '.join(sorted(KNOWN))})")
