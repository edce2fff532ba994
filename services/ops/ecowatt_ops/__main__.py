"""Run the ops service on its own: `python -m ecowatt_ops` (distributed mode)."""

from __future__ import annotations

from ecowatt_kernel.app import serve

from ecowatt_ops.service import SERVICE


def main() -> None:
    serve(SERVICE)


if __name__ == "__main__":
    main()
