"""The root of every exception the kernel raises on purpose: catch `EcoWattError` to catch
them all; each module raises its own kind and documents when.

    EcoWattError
    ├── ConfigurationError (ValueError)    settings: the process refuses to start
    │   ├── MissingEnvironmentError        ECOWATT_ENVIRONMENT not set (fail closed)
    │   └── PlaceholderSecretError         a dev-insecure-… secret outside development/test
    ├── InvalidTokenError                  identity: a token that cannot be trusted (401)
    ├── JwksError                          jwks: the auth service's key set unreadable
    ├── ContractError (ValueError)         contracts: a message that breaks its contract
    ├── WorkbookError (ValueError)         excel: an upload that is no safe, readable .xlsx
    ├── BusError                           bus: the broker could not take or give messages
    │   └── PublishError
    │       └── BusUnavailableError        no broker reachable within the timeout
    ├── TransientError                     bus: a dependency is down; retried, never
    │                                      dead-lettered (handlers raise it)
    └── Problem                            problems: an HTTP error as RFC 9457 details
        ├── Unauthorized (401), Forbidden (403), NotFound (404), Conflict (409)
        └── ExportTooLarge (422)           excel: an export beyond the row cap

Exceptions that are ValueErrors as well stay so, because pydantic validators and callers
that predate this root catch ValueError.
"""

from __future__ import annotations

__all__ = ["ConfigurationError", "EcoWattError"]


class EcoWattError(Exception):
    """Base of every exception the kernel raises on purpose."""


class ConfigurationError(EcoWattError, ValueError):
    """The process's settings are refused; it does not start."""
