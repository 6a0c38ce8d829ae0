"""The exceptions fedgen raises for bad input; the CLI turns them into one readable line."""


class FedgenError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""


class ConfigError(FedgenError):
    """A config value that cannot work (wrong type, out of range, impossible split)."""


class DataError(FedgenError):
    """A missing or corrupt cohort file."""


class FederationError(FedgenError):
    """A client failed or did not reply during federated training."""


class TrackingError(FedgenError):
    """The tracking store could not be opened or written."""
