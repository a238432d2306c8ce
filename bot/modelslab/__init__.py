"""ModelsLab: the only package that speaks HTTP to ModelsLab (design §4).

Every HTTP fact (status, body, transport failure) is turned here into one
:class:`CancelOutcome`, :class:`TrainingStatus` or :class:`KeyCheck`; nothing above this
package sees httpx.
"""

from bot.modelslab.client import ModelsLabClient
from bot.modelslab.limiter import KeyLimiter
from bot.modelslab.wire import CancelOutcome, KeyCheck, TrainingStatus

__all__ = ["CancelOutcome", "KeyCheck", "KeyLimiter", "ModelsLabClient", "TrainingStatus"]
