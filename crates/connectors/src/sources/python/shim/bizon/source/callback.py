"""bizon-rs's stand-in for bizon.source.callback (bizon 0.6.4)."""
from abc import ABC, abstractmethod
from typing import List

from .config import SourceConfig
from .models import SourceIteration


class AbstractSourceCallback(ABC):
    @abstractmethod
    def __init__(self, config: SourceConfig):
        pass

    @abstractmethod
    def on_iterations_written(self, iterations: List[SourceIteration]):
        pass


class NoOpSourceCallback(AbstractSourceCallback):
    def __init__(self, config: SourceConfig):
        pass

    def on_iterations_written(self, iterations: List[SourceIteration]):
        """No-op callback"""
