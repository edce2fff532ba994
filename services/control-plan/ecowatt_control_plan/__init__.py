"""EcoWatt control plans (重污染天气应急): owns emission-reduction lists (一厂一策), alert
orders, per- enterprise tasks and their compliance.
"""
