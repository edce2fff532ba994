"""Authorization headers for tests whose token is signed when a request is sent."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from ecowatt_kernel.identity import Identity, TokenSigner


class FreshBearer(Mapping[str, str]):
    """`Authorization` headers whose token is signed at each use, so that module constants
    (`CITY = token(...)`) never expire however long the suite runs (tokens live minutes)."""

    def __init__(self, signer: TokenSigner, identity: Identity) -> None:
        self.signer = signer
        self.identity = identity

    def __getitem__(self, key: str) -> str:
        if key != "Authorization":
            raise KeyError(key)
        return f"Bearer {self.signer.sign(self.identity)}"

    def __iter__(self) -> Iterator[str]:
        return iter(("Authorization",))

    def __len__(self) -> int:
        return 1
