"""The documentation's links, checked: run by infra/test.sh.

    python3 infra/doclinks.py

Every relative link and image in README.md, CHANGELOG.md and docs/*.md must name a file of the
repository, and a `#fragment` a heading of that file (GitHub's anchors: lower case, punctuation
dropped, spaces as hyphens). The README stays the first ten minutes: at most 200 lines.
"""
import glob
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
README_MAX_LINES = 200


def anchors(path):
    text = re.sub(r"```.*?```", "", open(path).read(), flags=re.S)
    seen, out = {}, set()
    for title in re.findall(r"^#+ (.+)$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(path):
    text = re.sub(r"```.*?```", "", open(path).read(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", text)


def main():
    docs = ["README.md", "CHANGELOG.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
    problems, checked = [], 0
    for doc in docs:
        path = os.path.join(ROOT, doc)
        if not os.path.exists(path):
            problems.append(f"{doc}: missing")
            continue
        for target in links(path):
            if re.match(r"^[a-z]+:", target):
                continue  # an absolute URL: not followed (no outbound traffic)
            checked += 1
            file, _, fragment = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
            if not os.path.exists(dest):
                problems.append(f"{doc}: {target}: no such file")
            elif fragment and dest.endswith(".md") and fragment not in anchors(dest):
                problems.append(f"{doc}: {target}: no heading #{fragment}")
    lines = open(os.path.join(ROOT, "README.md")).read().count("\n")
    if lines > README_MAX_LINES:
        problems.append(f"README.md: {lines} lines (at most {README_MAX_LINES}; the rest belongs in docs/)")
    for p in problems:
        print(f"doclinks: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"doclinks: {checked} links in {len(docs)} documents resolve; README.md {lines} lines")


main()
