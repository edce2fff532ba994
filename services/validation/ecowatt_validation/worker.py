"""One validation consumer worker without the API: `python -m ecowatt_validation.worker`.

Worker 0 (`python -m ecowatt_validation` with `ECOWATT_VALIDATION_WORKERS` > 1) starts these
with `ECOWATT_VALIDATION_WORKER_INDEX` set; see `ecowatt_kernel.workers` and the README.
"""

from __future__ import annotations

from ecowatt_kernel.workers import worker_main

from ecowatt_validation.service import SERVICE

if __name__ == "__main__":
    worker_main(SERVICE)
