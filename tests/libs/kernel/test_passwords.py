from __future__ import annotations

from ecowatt_kernel.passwords import hash_password, verify_password


def test_hash_verifies_only_the_right_password() -> None:
    encoded = hash_password("123456")
    assert encoded.startswith("scrypt$16384$8$1$")
    assert "123456" not in encoded
    assert verify_password("123456", encoded)
    assert not verify_password("123457", encoded)
    assert not verify_password("", encoded)


def test_same_password_gets_different_salts() -> None:
    assert hash_password("pw") != hash_password("pw")


def test_malformed_hashes_never_verify() -> None:
    for bad in ("", "plain", "scrypt$x$8$1$a$b", "bcrypt$1$2$3$4$5", "scrypt$16384$8$1$!!$??"):
        assert not verify_password("pw", bad)
