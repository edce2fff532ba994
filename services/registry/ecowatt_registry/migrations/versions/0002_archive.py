"""The archive: enterprises, lines, facilities, control groups, devices, points, history, outbox.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from ecowatt_kernel.outbox import create_outbox_table
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the archive tables and the outbox."""
    op.create_table(
        "change_history",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("entity", sa.Text(), nullable=False),
        sa.Column("entity_id", sa.Text(), nullable=False),
        sa.Column("enterprise_id", sa.Text(), nullable=True),
        sa.Column("operation", sa.Text(), nullable=False),
        sa.Column("changes", postgresql.JSONB(astext_type=Text()), nullable=False),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_history")),
        schema="registry",
    )
    op.create_index(
        "ix_change_history_enterprise",
        "change_history",
        ["enterprise_id", "changed_at"],
        unique=False,
        schema="registry",
    )
    op.create_index(
        "ix_change_history_entity",
        "change_history",
        ["entity", "entity_id"],
        unique=False,
        schema="registry",
    )
    op.create_table(
        "enterprise",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("credit_code", sa.Text(), nullable=True),
        sa.Column("district_code", sa.Text(), nullable=False),
        sa.Column("zone", sa.Text(), nullable=True),
        sa.Column("town", sa.Text(), nullable=True),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("industry_code", sa.Text(), nullable=True),
        sa.Column("key_industry", sa.Text(), nullable=True),
        sa.Column("performance_grade", sa.Text(), nullable=False),
        sa.Column("performance_grade_since", sa.Date(), nullable=True),
        sa.Column("control_type", sa.Text(), nullable=True),
        sa.Column("exempt", sa.Boolean(), nullable=False),
        sa.Column("production_status", sa.Text(), nullable=False),
        sa.Column("om_company", sa.Text(), nullable=True),
        sa.Column("contacts", postgresql.JSONB(astext_type=Text()), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=True),
        sa.Column("updated_by", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "performance_grade IN ('A','B','C','D','leading','none')",
            name=op.f("ck_enterprise_performance_grade"),
        ),
        sa.CheckConstraint(
            "production_status IN ('normal','suspended','closed')",
            name=op.f("ck_enterprise_production_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enterprise")),
        schema="registry",
    )
    op.create_index(
        op.f("ix_enterprise_district_code"),
        "enterprise",
        ["district_code"],
        unique=False,
        schema="registry",
    )
    op.create_index(
        op.f("ix_enterprise_industry_code"),
        "enterprise",
        ["industry_code"],
        unique=False,
        schema="registry",
    )
    op.create_index(
        op.f("ix_enterprise_name"), "enterprise", ["name"], unique=False, schema="registry"
    )
    op.create_index(
        op.f("ix_enterprise_zone"), "enterprise", ["zone"], unique=False, schema="registry"
    )
    op.create_index(
        "uq_enterprise_credit_code",
        "enterprise",
        ["credit_code"],
        unique=True,
        schema="registry",
        postgresql_where=sa.text("credit_code IS NOT NULL"),
    )
    op.create_table(
        "registry_meta",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", postgresql.JSONB(astext_type=Text()), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_registry_meta")),
        schema="registry",
    )
    op.create_table(
        "control_group",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("enterprise_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("required_mode", sa.Text(), nullable=False),
        sa.Column("start_lead_min", sa.Integer(), nullable=False),
        sa.Column("stop_lag_min", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=True),
        sa.Column("updated_by", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "required_mode IN ('all','any')", name=op.f("ck_control_group_required_mode")
        ),
        sa.CheckConstraint(
            "valid_to IS NULL OR valid_from IS NULL OR valid_to >= valid_from",
            name=op.f("ck_control_group_validity"),
        ),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["registry.enterprise.id"],
            name=op.f("fk_control_group_enterprise_id_enterprise"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_control_group")),
        schema="registry",
    )
    op.create_index(
        op.f("ix_control_group_enterprise_id"),
        "control_group",
        ["enterprise_id"],
        unique=False,
        schema="registry",
    )
    op.create_table(
        "device",
        sa.Column("mn", sa.Text(), nullable=False),
        sa.Column("enterprise_id", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("protocol_version", sa.Text(), nullable=False),
        sa.Column("electricity_profile", sa.Text(), nullable=False),
        sa.Column("crc_variant", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("rtd_interval_s", sa.Integer(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=True),
        sa.Column("updated_by", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "crc_variant IN ('standard','modbus_hi_lo','modbus_lo_hi')",
            name=op.f("ck_device_crc_variant"),
        ),
        sa.CheckConstraint(
            "protocol_version IN ('2005','2017','2025')", name=op.f("ck_device_protocol_version")
        ),
        sa.CheckConstraint(
            "status IN ('active','disabled','removed')", name=op.f("ck_device_status")
        ),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["registry.enterprise.id"],
            name=op.f("fk_device_enterprise_id_enterprise"),
        ),
        sa.PrimaryKeyConstraint("mn", name=op.f("pk_device")),
        schema="registry",
    )
    op.create_index(
        op.f("ix_device_enterprise_id"),
        "device",
        ["enterprise_id"],
        unique=False,
        schema="registry",
    )
    op.create_table(
        "enterprise_grade",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("enterprise_id", sa.Text(), nullable=False),
        sa.Column("grade", sa.Text(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["registry.enterprise.id"],
            name=op.f("fk_enterprise_grade_enterprise_id_enterprise"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enterprise_grade")),
        schema="registry",
    )
    op.create_index(
        op.f("ix_enterprise_grade_enterprise_id"),
        "enterprise_grade",
        ["enterprise_id"],
        unique=False,
        schema="registry",
    )
    op.create_table(
        "production_line",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("enterprise_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("process", sa.Text(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=True),
        sa.Column("updated_by", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["registry.enterprise.id"],
            name=op.f("fk_production_line_enterprise_id_enterprise"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_production_line")),
        schema="registry",
    )
    op.create_index(
        op.f("ix_production_line_enterprise_id"),
        "production_line",
        ["enterprise_id"],
        unique=False,
        schema="registry",
    )
    op.create_table(
        "facility",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("enterprise_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("code", sa.Text(), nullable=True),
        sa.Column("production_line_id", sa.Text(), nullable=True),
        sa.Column("process", sa.Text(), nullable=True),
        sa.Column("control_type", sa.Text(), nullable=True),
        sa.Column("rated_kw", sa.Float(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=True),
        sa.Column("updated_by", sa.Text(), nullable=True),
        sa.CheckConstraint("kind IN ('production','control')", name=op.f("ck_facility_kind")),
        sa.CheckConstraint(
            "status IN ('active','disabled','removed')", name=op.f("ck_facility_status")
        ),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["registry.enterprise.id"],
            name=op.f("fk_facility_enterprise_id_enterprise"),
        ),
        sa.ForeignKeyConstraint(
            ["production_line_id"],
            ["registry.production_line.id"],
            name=op.f("fk_facility_production_line_id_production_line"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_facility")),
        schema="registry",
    )
    op.create_index(
        op.f("ix_facility_enterprise_id"),
        "facility",
        ["enterprise_id"],
        unique=False,
        schema="registry",
    )
    op.create_index(
        op.f("ix_facility_production_line_id"),
        "facility",
        ["production_line_id"],
        unique=False,
        schema="registry",
    )
    op.create_index(
        "uq_facility_enterprise_code",
        "facility",
        ["enterprise_id", "code"],
        unique=True,
        schema="registry",
        postgresql_where=sa.text("code IS NOT NULL"),
    )
    op.create_table(
        "control_group_member",
        sa.Column("group_id", sa.Text(), nullable=False),
        sa.Column("facility_id", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "role IN ('production','control')", name=op.f("ck_control_group_member_role")
        ),
        sa.ForeignKeyConstraint(
            ["facility_id"],
            ["registry.facility.id"],
            name=op.f("fk_control_group_member_facility_id_facility"),
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["registry.control_group.id"],
            name=op.f("fk_control_group_member_group_id_control_group"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "facility_id", name=op.f("pk_control_group_member")),
        schema="registry",
    )
    op.create_index(
        op.f("ix_control_group_member_facility_id"),
        "control_group_member",
        ["facility_id"],
        unique=False,
        schema="registry",
    )
    op.create_table(
        "point",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("enterprise_id", sa.Text(), nullable=False),
        sa.Column("facility_id", sa.Text(), nullable=True),
        sa.Column("point_type", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("is_key", sa.Boolean(), nullable=False),
        sa.Column("device_mn", sa.Text(), nullable=True),
        sa.Column("circuit", sa.Integer(), nullable=False),
        sa.Column("ct_ratio", sa.Float(), nullable=False),
        sa.Column("pt_ratio", sa.Float(), nullable=False),
        sa.Column("rated_kw", sa.Float(), nullable=True),
        sa.Column("max_load_kw", sa.Float(), nullable=True),
        sa.Column("start_stop_kw", sa.Float(), nullable=True),
        sa.Column("low_load_kw", sa.Float(), nullable=True),
        sa.Column("commissioned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("expected_interval_s", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=True),
        sa.Column("updated_by", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "point_type IN ('total','production','control','indirect','combined')",
            name=op.f("ck_point_point_type"),
        ),
        sa.CheckConstraint(
            "status IN ('active','disabled','removed')", name=op.f("ck_point_status")
        ),
        sa.CheckConstraint("circuit BETWEEN 1 AND 99", name=op.f("ck_point_circuit")),
        sa.ForeignKeyConstraint(
            ["device_mn"], ["registry.device.mn"], name=op.f("fk_point_device_mn_device")
        ),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["registry.enterprise.id"],
            name=op.f("fk_point_enterprise_id_enterprise"),
        ),
        sa.ForeignKeyConstraint(
            ["facility_id"], ["registry.facility.id"], name=op.f("fk_point_facility_id_facility")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_point")),
        schema="registry",
    )
    op.create_index(
        op.f("ix_point_device_mn"), "point", ["device_mn"], unique=False, schema="registry"
    )
    op.create_index(
        op.f("ix_point_enterprise_id"), "point", ["enterprise_id"], unique=False, schema="registry"
    )
    op.create_index(
        op.f("ix_point_facility_id"), "point", ["facility_id"], unique=False, schema="registry"
    )
    op.create_index(
        "uq_point_device_circuit",
        "point",
        ["device_mn", "circuit"],
        unique=True,
        schema="registry",
        postgresql_where=sa.text("device_mn IS NOT NULL AND status <> 'removed'"),
    )

    create_outbox_table(op.get_bind(), schema="registry")


def downgrade() -> None:
    """Drop everything `upgrade` created."""
    for table in (
        "outbox",
        "change_history",
        "control_group_member",
        "control_group",
        "point",
        "device",
        "facility",
        "production_line",
        "enterprise_grade",
        "enterprise",
        "registry_meta",
    ):
        op.drop_table(table, schema="registry")
