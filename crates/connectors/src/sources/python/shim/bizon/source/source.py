"""bizon-rs's stand-in for bizon.source.source (bizon 0.6.4)."""
import logging
from abc import ABC, abstractmethod
from typing import Any, List, Optional, Tuple, Type, Union

from requests.adapters import Retry
from requests.auth import AuthBase

from .callback import AbstractSourceCallback, NoOpSourceCallback
from .config import SourceConfig
from .models import SourceIncrementalState, SourceIteration
from .session import CappedRetry, Session

logger = logging.getLogger(__name__)


class AbstractSource(ABC):
    def __init__(self, config: SourceConfig):
        self.config = config
        self.session = self.get_session()

        if config.http is not None and type(self).get_session is not AbstractSource.get_session:
            logger.warning(
                "source.http has no effect: this source overrides get_session(). "
                "Override get_retry_policy() instead to keep the default session."
            )

        auth = self.get_authenticator()
        if auth:
            self.session.auth = auth

    def __del__(self):
        session = getattr(self, "session", None)
        if session is not None:
            session.close()

    @staticmethod
    @abstractmethod
    def streams() -> List[str]:
        """Return all the streams that the source supports"""

    @staticmethod
    @abstractmethod
    def get_config_class() -> Type[SourceConfig]:
        """Return the config class for the source"""

    def get_source_callback_instance(self) -> AbstractSourceCallback:
        """Return an instance of the source callback"""
        return NoOpSourceCallback(config=self.config)

    @abstractmethod
    def get_authenticator(self) -> Union[AuthBase, None]:
        """Return an authenticator for the source, set in the session. None if none is needed."""

    @abstractmethod
    def check_connection(self) -> Tuple[bool, Optional[Any]]:
        pass

    @abstractmethod
    def get(self, pagination: dict = None) -> SourceIteration:
        """Return the page after `pagination` (the first page if None); an empty next_pagination ends the sync."""

    @abstractmethod
    def get_total_records_count(self) -> Optional[int]:
        """Return the total count of records available in the source"""

    def get_records_after(self, source_state: SourceIncrementalState, pagination: dict = None) -> SourceIteration:
        """Incremental counterpart of get(): records after `source_state`. Not implemented by default (None)."""
        pass

    def get_retry_policy(self) -> Optional[Retry]:
        """Retry policy of the default session. None keeps the legacy policy."""
        http = self.config.http
        if http is None:
            return None
        return CappedRetry(
            total=http.retries.total,
            backoff_factor=http.retries.backoff_factor,
            status_forcelist=http.retries.status_forcelist,
            allowed_methods=http.retries.allowed_methods,
            respect_retry_after_header=True,
            max_retry_after=http.retries.retry_after_max,
            # Hand back the last response once retries run out, so raise_for_status raises an HTTPError.
            raise_on_status=False,
        )

    def get_session(self) -> Session:
        """Return a new session"""
        http = self.config.http
        if http is None:
            return Session(retries=self.get_retry_policy())
        return Session(retries=self.get_retry_policy(), timeout=http.timeout, raise_for_status=http.raise_for_status)

    def commit(self):
        """Commit the records to the source"""
        pass

    def set_streams_config(self, streams: list) -> None:
        """Optional hook for sources that support stream routing (top-level `streams` config)."""
        pass
