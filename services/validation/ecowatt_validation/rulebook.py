"""Rule versions and parameters as stored in the database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ecowatt_validation.models import RULE_VERSIONS, RULES_TABLE
from ecowatt_validation.rules import RULES, RuleState, default_states, merged_params


class RuleBook:
    """The current state of every rule; `rulebook(code)` is what checks read."""

    def __init__(self) -> None:
        self.states: dict[str, RuleState] = default_states()

    def __call__(self, code: str) -> RuleState:
        return self.states[code]

    async def load(self, session: AsyncSession) -> None:
        """Seed rules the database does not know yet (version 1), then read them all."""
        seed = [
            {"code": r.code, "version": 1, "enabled": True, "params": dict(r.defaults)}
            for r in RULES
        ]
        await session.execute(insert(RULES_TABLE).values(seed).on_conflict_do_nothing())
        await session.execute(
            insert(RULE_VERSIONS)
            .values(
                [{**s, "created_by": "seed", "reason": "default (supervision.md)"} for s in seed]
            )
            .on_conflict_do_nothing()
        )
        states = dict(self.states)
        for row in await session.execute(select(RULES_TABLE)):
            if row.code in states:
                states[row.code] = RuleState(
                    row.code,
                    row.version,
                    row.enabled,
                    merged_params(row.code, _known(row.code, row.params)),
                )
        self.states = states

    async def update(
        self,
        session: AsyncSession,
        code: str,
        *,
        params: dict[str, Any] | None,
        enabled: bool | None,
        actor: str,
        reason: str | None,
    ) -> RuleState:
        """Write a new version of `code` (ValueError for bad parameters)."""
        row = (
            await session.execute(
                select(RULES_TABLE).where(RULES_TABLE.c.code == code).with_for_update()
            )
        ).one()
        current = merged_params(code, _known(code, row.params))
        new_params = merged_params(code, {**current, **(params or {})})
        new_enabled = row.enabled if enabled is None else enabled
        version = row.version + 1
        now = datetime.now(UTC)
        await session.execute(
            RULES_TABLE.update()
            .where(RULES_TABLE.c.code == code)
            .values(
                version=version,
                params=new_params,
                enabled=new_enabled,
                updated_at=now,
                updated_by=actor,
            )
        )
        await session.execute(
            RULE_VERSIONS.insert().values(
                code=code,
                version=version,
                params=new_params,
                enabled=new_enabled,
                created_at=now,
                created_by=actor,
                reason=reason,
            )
        )
        state = RuleState(code, version, new_enabled, new_params)
        self.states = {**self.states, code: state}
        return state


def _known(code: str, params: dict[str, Any]) -> dict[str, Any]:
    from ecowatt_validation.rules import RULES_BY_CODE

    defaults = RULES_BY_CODE[code].defaults
    return {k: v for k, v in params.items() if k in defaults}
