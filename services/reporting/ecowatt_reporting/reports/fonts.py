"""The CJK font of PDF reports: one of Debian's TrueType CJK fonts.

PDF reports embed (a subset of) a TrueType font with Chinese glyphs. reportlab reads
TrueType outlines only, so Debian's `fonts-wqy-zenhei` (what `make fonts` installs),
`fonts-wqy-microhei`, `fonts-droid-fallback` or `fonts-arphic-uming` work, while the
OpenType/CFF Noto CJK files do not. `ECOWATT_REPORTING_CJK_FONT` names another file.

`python -m ecowatt_reporting.reports.fonts` prints the font found, or exits 1 with the
install hint (the `make fonts` target uses it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["CANDIDATES", "FONT_NAME", "FontMissingError", "find_font", "register_font"]

FONT_NAME = "EcoWattCJK"
CANDIDATES = (
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"),
    Path("/usr/share/fonts/truetype/arphic/uming.ttc"),
)
INSTALL_HINT = (
    "no CJK TrueType font for PDF reports: run `make fonts` (installs Debian's "
    "fonts-wqy-zenhei with apt-get) or set ECOWATT_REPORTING_CJK_FONT to a .ttf/.ttc file"
)


class FontMissingError(RuntimeError):
    """No usable CJK font: PDF reports cannot be rendered."""


def find_font(configured: Path | None = None) -> Path:
    """The configured font file, else the first Debian CJK font present."""
    if configured is not None:
        if not configured.is_file():
            raise FontMissingError(f"ECOWATT_REPORTING_CJK_FONT={configured} does not exist")
        return configured
    for candidate in CANDIDATES:
        if candidate.is_file():
            return candidate
    raise FontMissingError(INSTALL_HINT)


_registered: dict[str, str] = {}


def register_font(configured: Path | None = None) -> str:
    """Register the CJK font with reportlab (once); its reportlab name."""
    path = find_font(configured)
    key = str(path)
    if key not in _registered:
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.ttfonts import TTFont

        try:
            font = (
                TTFont(FONT_NAME, key, subfontIndex=0)
                if key.endswith(".ttc")
                else TTFont(FONT_NAME, key)
            )
        except Exception as exc:  # reportlab raises TTFError and plain errors alike
            raise FontMissingError(f"cannot use {path} for PDF reports: {exc}") from exc
        pdfmetrics.registerFont(font)
        _registered[key] = FONT_NAME
    return _registered[key]


def main() -> int:
    configured = os.environ.get("ECOWATT_REPORTING_CJK_FONT")
    try:
        print(find_font(Path(configured) if configured else None))
    except FontMissingError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
