"""bizon-rs's stand-in for bizon.source.config (bizon 0.6.4)."""
from abc import ABC
from enum import Enum
from typing import List, Optional, Tuple, Union

from pydantic import BaseModel, Field

from .auth.config import AuthConfig


class SourceSyncModes(str, Enum):
    FULL_REFRESH = "full_refresh"
    INCREMENTAL = "incremental"
    STREAM = "stream"


class APIConfig(BaseModel):
    retry_limit: Optional[int] = Field(100, description="Number of retries before giving up")


class HttpRetryConfig(BaseModel):
    total: int = Field(10, description="Maximum number of retries, across all causes")
    backoff_factor: float = Field(2, description="Exponential backoff factor between retries, in seconds")
    status_forcelist: List[int] = Field(
        [429, 500, 502, 503, 504, 520, 522, 524], description="Status codes to retry, with or without a Retry-After"
    )
    allowed_methods: List[str] = Field(["GET", "POST"], description="HTTP methods that may be retried")
    retry_after_max: Optional[float] = Field(120, description="Upper bound in seconds on a Retry-After wait")


class HttpConfig(BaseModel):
    timeout: Optional[Union[float, Tuple[float, float]]] = Field(
        (10, 60), description="Default (connect, read) timeout in seconds for requests that do not set one"
    )
    retries: HttpRetryConfig = Field(default_factory=HttpRetryConfig)
    raise_for_status: bool = Field(True, description="Raise on 4xx/5xx responses")


class SourceConfig(BaseModel, ABC):
    # Unknown keys are ignored (pydantic's default), as in bizon.
    name: str = Field(..., description="Name of the source to sync")
    stream: str = Field(..., description="Name of the stream to sync")
    source_file_path: Optional[str] = Field(default=None, description="Path to the source file")
    sync_mode: SourceSyncModes = Field(default=SourceSyncModes.FULL_REFRESH, description="Sync mode to use")
    cursor_field: Optional[str] = Field(default=None, description="Field name to use for incremental filtering")
    force_ignore_checkpoint: bool = Field(default=False, description="Ignore existing checkpoints")
    reset: bool = Field(default=False, description="Re-fetch the whole stream and replace the destination table")
    authentication: Optional[AuthConfig] = Field(default=None, description="Configuration for the authentication")
    max_iterations: Optional[int] = Field(default=None, description="Maximum number of iterations, None for all")
    api_config: APIConfig = Field(default=APIConfig(retry_limit=10), description="Configuration for the API client")
    http: Optional[HttpConfig] = Field(
        default=None, description="HTTP policy for the default session. Unset keeps the legacy policy."
    )
    init_pipeline: bool = Field(default=True, description="[Used for testing] Initialize the source pipeline")
