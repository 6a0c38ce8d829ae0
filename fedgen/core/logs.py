"""Keep Flower and Ray quiet: fedgen prints one progress line per round instead."""

import logging


def quiet_third_party() -> None:
    """Silence Flower's INFO chatter and stop its lines from appearing twice under Hydra.

    Flower's logger has a console handler of its own and also propagates to the root logger
    that Hydra configures, so every line would be printed twice; warnings and errors still show
    through Flower's own handler.
    """
    flwr = logging.getLogger("flwr")
    flwr.setLevel(logging.ERROR)
    flwr.propagate = False
    # Flower sets its logger's level to DEBUG when it is imported, and fedgen imports it only
    # when a job trains (after this runs): a filter on the logger outlives that reset.
    if not any(isinstance(f, _ErrorsOnly) for f in flwr.filters):
        flwr.addFilter(_ErrorsOnly())
    # dp-accounting's RDP accountant warns once per skipped Renyi order (dozens of lines for a
    # subsampled Gaussian); the orders it keeps still give a valid epsilon.
    logging.getLogger("absl").setLevel(logging.ERROR)


class _ErrorsOnly(logging.Filter):
    """Pass only records at ERROR or above."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR
