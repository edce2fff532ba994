"""Run the alarm service on its own: `python -m ecowatt_alarm` (distributed mode)."""

from __future__ import annotations

from ecowatt_kernel.app import serve

from ecowatt_alarm.service import SERVICE


def main() -> None:
    serve(SERVICE)


if __name__ == "__main__":
    main()
