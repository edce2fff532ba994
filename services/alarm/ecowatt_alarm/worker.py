"""One alarm consumer worker without the API: `python -m ecowatt_alarm.worker`.

Worker 0 (`python -m ecowatt_alarm` with `ECOWATT_ALARM_WORKERS` > 1) starts these with
`ECOWATT_ALARM_WORKER_INDEX` set; see `ecowatt_kernel.workers` and the README.
"""

from __future__ import annotations

from ecowatt_kernel.workers import worker_main

from ecowatt_alarm.service import SERVICE

if __name__ == "__main__":
    worker_main(SERVICE)
