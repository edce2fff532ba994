"""Run the control-plan service on its own: `python -m ecowatt_control_plan` (distributed mode)."""

from __future__ import annotations

from ecowatt_kernel.app import serve

from ecowatt_control_plan.service import SERVICE


def main() -> None:
    serve(SERVICE)


if __name__ == "__main__":
    main()
