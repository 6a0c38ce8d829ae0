"""fedgen: how much does federated learning on genotype cohorts leak about the patients?"""

__version__ = "0.1.0"

import os as _os

# Flower sends usage telemetry unless told not to; fedgen runs are offline research jobs.
_os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
