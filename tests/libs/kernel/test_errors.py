"""One root exception: every exception class the kernel exports is an `EcoWattError`, and
the tree drawn in `ecowatt_kernel.errors` names each of them."""

from __future__ import annotations

import importlib
import pkgutil

import ecowatt_kernel
from ecowatt_kernel import errors
from ecowatt_kernel.errors import EcoWattError


def exported_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module_info in pkgutil.walk_packages(ecowatt_kernel.__path__, "ecowatt_kernel."):
        module = importlib.import_module(module_info.name)
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name, None)
            if isinstance(value, type) and issubclass(value, BaseException):
                found[name] = value
    return found


def test_every_exported_exception_descends_from_the_root_and_is_in_the_tree() -> None:
    exported = exported_exceptions()
    assert {"Problem", "InvalidTokenError", "BusError", "WorkbookError"} <= exported.keys()
    tree = errors.__doc__ or ""
    for name, cls in exported.items():
        assert issubclass(cls, EcoWattError), f"{name} is not an EcoWattError"
        assert name in tree, f"{name} is missing from the tree in ecowatt_kernel.errors"
