"""EcoWatt control plans (重污染天气应急): the emergency reduction list, alert orders,
per-enterprise tasks, hourly compliance from the meters, supervision issues and reports."""
