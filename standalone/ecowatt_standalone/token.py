"""Print a development identity token: `make token` (or `python -m ecowatt_standalone.token`).

Until the auth service issues tokens after a login, this is how a developer calls the APIs of
a standalone platform. The token is signed with the development key, which every service
refuses outside development and test (`ECOWATT_ENVIRONMENT=production`), so it opens
nothing in a real deployment.

    curl -H "Authorization: Bearer $(make -s token)" localhost:8000/api/registry/enterprises
"""

from __future__ import annotations

import argparse
from datetime import timedelta

from ecowatt_kernel.identity import DataScope, Identity, Role, signer_from_settings
from ecowatt_kernel.settings import KernelSettings, settings_or_exit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subject", default="developer")
    parser.add_argument(
        "--role", action="append", choices=[r.value for r in Role], help="repeatable; default admin"
    )
    parser.add_argument(
        "--district",
        action="append",
        default=[],
        help="GB/T 2260 code in scope (repeatable); default: whole deployment",
    )
    parser.add_argument(
        "--enterprise", action="append", default=[], help="enterprise id in scope (repeatable)"
    )
    parser.add_argument("--hours", type=float, default=12.0, help="lifetime")
    args = parser.parse_args()

    scoped = bool(args.district or args.enterprise)
    identity = Identity(
        subject=args.subject,
        name=args.subject,
        roles=frozenset(Role(r) for r in (args.role or ["admin"])),
        scope=DataScope(
            all=not scoped,
            districts=frozenset(args.district),
            enterprises=frozenset(args.enterprise),
        ),
    )
    signer = signer_from_settings(settings_or_exit(KernelSettings))
    print(signer.sign(identity, ttl=timedelta(hours=args.hours)))


if __name__ == "__main__":
    main()
