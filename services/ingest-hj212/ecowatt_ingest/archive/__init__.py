"""The raw-frame archive (原始报文): every `hj212.frames` record in PostgreSQL, queried by MN,
time, verdict and reason with scope enforcement, downloaded as text, linked from readings,
findings and alarms, and replayed through validation and alarm.

    models   settings (inherited by IngestSettings), tables, API shapes
    service  the consumer, partitions and retention, queries, scope and links
    replay   replay jobs
    views    the REST API under /archive; start_archive / stop_archive (service start-up)
"""
