"""Run the reporting service on its own: `python -m ecowatt_reporting` (distributed mode)."""

from __future__ import annotations

from ecowatt_kernel.app import serve

from ecowatt_reporting.service import SERVICE


def main() -> None:
    serve(SERVICE)


if __name__ == "__main__":
    main()
