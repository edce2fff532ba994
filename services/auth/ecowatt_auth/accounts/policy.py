"""The password policy (等保 2.0 level 3, 身份鉴别): length, character classes, history, age.

`violations()` lists every rule a candidate breaks, in Chinese first with the English after,
so that the SPA can show them all at once instead of one per attempt.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import datetime, timedelta

from ecowatt_kernel.passwords import verify_password

__all__ = ["PasswordPolicy", "Violation"]

_CLASSES = (
    ("lowercase", set(string.ascii_lowercase)),
    ("uppercase", set(string.ascii_uppercase)),
    ("digit", set(string.digits)),
)
_KEYBOARD_RUNS = ("0123456789", "abcdefghijklmnopqrstuvwxyz", "qwertyuiop", "asdfghjkl", "zxcvbnm")
_COMMON = frozenset(
    {"password", "passw0rd", "admin", "administrator", "ecowatt", "qwerty", "letmein", "welcome"}
)


@dataclass(frozen=True)
class Violation:
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def _classes(password: str) -> int:
    count = sum(1 for _, chars in _CLASSES if any(c in chars for c in password))
    symbols = any(not c.isalnum() for c in password)
    return count + int(symbols)


def _has_run(password: str, length: int = 4) -> bool:
    lowered = password.lower()
    for run in _KEYBOARD_RUNS:
        for start in range(len(run) - length + 1):
            chunk = run[start : start + length]
            if chunk in lowered or chunk[::-1] in lowered:
                return True
    return any(len(set(lowered[i : i + length])) == 1 for i in range(len(lowered) - length + 1))


@dataclass(frozen=True)
class PasswordPolicy:
    min_length: int = 10
    min_classes: int = 3
    history: int = 5
    max_age_days: int = 90
    max_length: int = 128

    def violations(
        self, password: str, *, username: str = "", previous_hashes: tuple[str, ...] = ()
    ) -> list[Violation]:
        """Every rule `password` breaks (empty: acceptable)."""
        found: list[Violation] = []
        if len(password) < self.min_length:
            found.append(
                Violation(
                    "too_short",
                    f"密码至少 {self.min_length} 位 (at least {self.min_length} characters)",
                )
            )
        if len(password) > self.max_length:
            found.append(
                Violation("too_long", f"密码最多 {self.max_length} 位 (at most {self.max_length})")
            )
        if _classes(password) < self.min_classes:
            found.append(
                Violation(
                    "too_simple",
                    f"密码须包含大写字母、小写字母、数字、符号中的至少 {self.min_classes} 类 "
                    f"(use {self.min_classes} of: upper case, lower case, digits, symbols)",
                )
            )
        if any(ord(c) < 32 or ord(c) == 127 for c in password):
            found.append(
                Violation("control_character", "密码不能包含控制字符 (no control characters)")
            )
        lowered = password.lower()
        if username and len(username) >= 3 and username.lower() in lowered:
            found.append(
                Violation(
                    "contains_username", "密码不能包含用户名 (must not contain the user name)"
                )
            )
        if lowered in _COMMON or any(word in lowered for word in ("password", "passw0rd")):
            found.append(Violation("common", "密码过于常见 (too common)"))
        if _has_run(password):
            found.append(
                Violation(
                    "sequence",
                    "密码不能包含连续或重复的 4 个字符，如 1234、abcd、aaaa "
                    "(no runs like 1234, abcd or aaaa)",
                )
            )
        if previous_hashes and any(
            verify_password(password, h) for h in previous_hashes[: self.history]
        ):
            found.append(
                Violation(
                    "reused",
                    f"不能与最近 {self.history} 次使用过的密码相同 "
                    f"(must differ from the last {self.history} passwords)",
                )
            )
        return found

    def expires_at(self, changed_at: datetime) -> datetime | None:
        """When a password set at `changed_at` must be changed (None: never)."""
        if self.max_age_days <= 0:
            return None
        return changed_at + timedelta(days=self.max_age_days)
