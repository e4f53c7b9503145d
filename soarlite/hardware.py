"""TEMPORARY shim until the hardware split lands (branch engine)."""
from soarlite.gpu import *  # noqa
from soarlite.gpu import OutOfMemory, card_from_torch, is_oom, oom_message, peak_gib  # noqa
