"""Old ``_target_`` path of the sweep callback, kept so stored runs' configs still compose."""

from fedgen.experiment.sweep import SweepParentRun

__all__ = ["SweepParentRun"]
