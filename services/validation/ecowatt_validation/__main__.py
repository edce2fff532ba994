"""Run the validation service on its own: `python -m ecowatt_validation` (distributed mode)."""

from __future__ import annotations

from ecowatt_kernel.app import serve

from ecowatt_validation.service import SERVICE


def main() -> None:
    serve(SERVICE)


if __name__ == "__main__":
    main()
