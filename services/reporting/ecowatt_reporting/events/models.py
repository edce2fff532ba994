"""What reporting keeps of the analytics topics: facility states and alarms as intervals
(timelines), data-quality findings, and compliance verdicts per enterprise-target-hour.

Every row is written idempotently: redelivered or out-of-order events leave the same rows
(natural keys; the newest `changed_at` wins for an alarm's or finding's current status, and
first times of handling steps keep their earliest value).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

from ecowatt_reporting.database import metadata, txid_column

STATE_INTERVAL = Table(
    "state_interval",
    metadata,
    Column("subject_kind", Text, primary_key=True),
    Column("subject_id", Text, primary_key=True),
    Column("started_at", DateTime(timezone=True), primary_key=True),
    Column("ended_at", DateTime(timezone=True)),
    Column("enterprise_id", Text, nullable=False),
    Column("facility_id", Text),
    Column("state", Text, nullable=False),
    Column("reason", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_state_interval_enterprise", STATE_INTERVAL.c.enterprise_id, STATE_INTERVAL.c.started_at)

ALARM_RECORD = Table(
    "alarm_record",
    metadata,
    Column("alarm_id", Text, primary_key=True),
    Column("enterprise_id", Text, nullable=False),
    Column("district_code", Text),
    Column("rule_code", Text, nullable=False),
    Column("rule_name", Text),
    Column("rule_version", Integer, nullable=False),
    Column("subject_kind", Text),
    Column("subject_id", Text, nullable=False),
    Column("group_id", Text),
    Column("level", Integer, nullable=False),
    Column("max_level", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("active", Boolean),
    Column("suppressed", Boolean, nullable=False),
    Column("first_at", DateTime(timezone=True), nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("last_at", DateTime(timezone=True)),
    Column("recovered_at", DateTime(timezone=True)),
    Column("dispatched_at", DateTime(timezone=True)),
    Column("feedback_at", DateTime(timezone=True)),
    Column("verified_at", DateTime(timezone=True)),
    Column("closed_at", DateTime(timezone=True)),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("explanation", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    txid_column(),
)
Index("ix_alarm_record_first_at", ALARM_RECORD.c.first_at)
"""`first_at`: when the condition began; `opened_at`: when the alarm was raised (after its
confirmation period) — handling times count from `opened_at`."""
Index("ix_alarm_record_txid", ALARM_RECORD.c.txid, ALARM_RECORD.c.alarm_id)

FINDING_RECORD = Table(
    "finding_record",
    metadata,
    Column("finding_id", Text, primary_key=True),
    Column("enterprise_id", Text, nullable=False),
    Column("rule_code", Text, nullable=False),
    Column("rule_version", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("subject_kind", Text, nullable=False),
    Column("subject_id", Text, nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True)),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("om_company", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_finding_record_opened_at", FINDING_RECORD.c.opened_at)

COMPLIANCE_HOUR = Table(
    "compliance_hour",
    metadata,
    Column("enterprise_id", Text, primary_key=True),
    Column("task_id", Text, primary_key=True),
    Column("target_id", Text, primary_key=True),
    Column("hour_start", DateTime(timezone=True), primary_key=True),
    Column("verdict", Text, nullable=False),
    Column("evidence", JSONB, nullable=False),
    Column("produced_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    txid_column(),
)
Index("ix_compliance_hour_txid", COMPLIANCE_HOUR.c.txid, COMPLIANCE_HOUR.c.enterprise_id)
Index("ix_compliance_hour_hour", COMPLIANCE_HOUR.c.hour_start)

STATE_ZH = {
    "offline": "离线",
    "power_loss": "停电",
    "stopped": "停运",
    "standby": "待机",
    "running": "运行",
    "low_load": "低负荷",
}
ALARM_STATUS_ZH = {
    "open": "待处理",
    "suppressed": "已抑制",
    "dispatched": "已下发",
    "replied": "企业已反馈",
    "verified": "已核查",
    "closed": "已销号",
}
LEVEL_ZH = {1: "一般", 2: "较重", 3: "严重"}
VERDICT_ZH = {"compliant": "合规", "non_compliant": "不合规", "unknown": "无法判定"}

FINDING_NAMES = {
    "no_monitoring_point": "无监管点位",
    "no_total_point": "无总用电监测点",
    "production_facility_unmonitored": "无产污设施或产污设施无对应监管点",
    "production_threshold_missing": "产污设施未设置阈值",
    "control_facility_unmonitored": "无治污设施或治污设施无对应监管点",
    "control_threshold_missing": "治污设施未设置阈值",
    "no_data_after_commissioning": "联网后无上报数据",
    "negative_energy": "电量为负",
    "daily_energy_gt_25x_max_load": "点位日电量大于25倍点位日最大负荷",
    "abnormal_large_energy": "电量异常偏大",
    "sub_meters_exceed_total": "生产设施和治理设施电量之和大于企业总电量",
    "negative_power": "功率为负值",
    "constant_power": "功率为恒定值",
    "industry_not_class_level": "行业未选择行业小类",
    "credit_code_empty": "社会信用代码为空",
    "credit_code_invalid": "社会信用代码无效",
    "device_offline": "设备离线",
    "data_latency": "数据延迟",
    "unbound_data": "数据未绑定点位",
}
"""Chinese names of validation's finding rules (its catalogue, docs/data-quality-rules.md),
for report tables; a code not listed is shown as it is."""
