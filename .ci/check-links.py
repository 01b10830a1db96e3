#!/usr/bin/env python3
"""Fails if any relative link or image in the built book points at a missing file, or if
a page still links KaTeX from a CDN (the book must read offline)."""
import re
import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else "book/book")
bad = []
pages = list(root.rglob("*.html"))
for page in pages:
    html = page.read_text(encoding="utf-8")
    if "cdn.jsdelivr.net/npm/katex" in html:
        bad.append(f"{page}: links KaTeX from a CDN")
    for url in re.findall(r'(?:href|src)="([^"]+)"', html):
        if re.match(r"^[a-z]+:|^#|^//", url):
            continue
        target = url.split("#")[0].split("?")[0]
        if target and not (page.parent / target).resolve().exists():
            bad.append(f"{page.relative_to(root)}: broken link {url}")
if not pages:
    bad.append(f"{root}: no pages built")
for b in bad:
    print(b)
print(f"checked {len(pages)} pages: {len(bad)} problems")
sys.exit(1 if bad else 0)
