"""Download MinkowskiEngine's sdist from the package index and check its sha256 (``pip download`` cannot: it prepares
the sdist's metadata, which imports torch in an isolated environment and fails).

    python scripts/minkowski/fetch_sdist.py OUT_DIR
"""

from __future__ import annotations

import hashlib
import re
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urljoin

VERSION = "0.5.4"
SHA256 = "b1879c00d0b0b1d30ba622cce239886a7e3c78ee9da1064cdfe2f64c2ab15f94"
INDEX = "https://pypi.org/simple/minkowskiengine/"


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"MinkowskiEngine-{VERSION}.tar.gz"
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == SHA256:
        print(target)
        return
    try:
        html = urllib.request.urlopen(INDEX, timeout=60).read().decode()
    except OSError as exc:
        sys.exit(f"cannot reach the package index {INDEX} ({exc}); download MinkowskiEngine-{VERSION}.tar.gz "
                 f"yourself and put it at {target}")
    links = re.findall(rf'href="([^"]*MinkowskiEngine-{re.escape(VERSION)}\.tar\.gz[^"]*)"', html)
    if not links:
        sys.exit(f"MinkowskiEngine-{VERSION}.tar.gz is not listed at {INDEX}")
    data = urllib.request.urlopen(urljoin(INDEX, links[0].replace("&amp;", "&")), timeout=300).read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        sys.exit(f"sha256 mismatch for the downloaded sdist: {digest} != {SHA256}")
    target.write_bytes(data)
    print(target)


if __name__ == "__main__":
    main()
