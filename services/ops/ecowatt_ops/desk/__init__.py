"""The O&M desk (运维服务台): what every desk feature shares — its tables' metadata, its
settings, its runtime (clock, notifier, background jobs) and who may do what."""
