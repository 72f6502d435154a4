"""bizon-rs's stand-in for bizon.source.models (bizon 0.6.4)."""
import json
from datetime import datetime, timezone
from typing import List, Optional, Union

from pydantic import BaseModel, Field, field_validator


class SourceRecord(BaseModel):
    id: str = Field(..., description="Unique identifier of the record in the source")
    data: dict = Field(..., description="JSON payload of the record")
    timestamp: datetime = Field(
        default_factory=lambda: datetime.now(tz=timezone.utc),
        description="Timestamp of the record as defined by the source. Default is the time of extraction",
    )
    destination_id: Optional[str] = Field(None, description="Destination id")

    @field_validator("id", mode="before")
    def coerce_int_to_str(value: Union[int, str]) -> str:
        if isinstance(value, int):
            return str(value)
        return value


class SourceIteration(BaseModel):
    next_pagination: dict = Field(..., description="Next pagination to be used in the next iteration")
    records: List[SourceRecord] = Field(..., description="List of records retrieved in the current iteration")
    next_state: Optional[dict] = Field(default=None, description="State to hand the next incremental run")

    @field_validator("next_state", mode="after")
    def check_json_serializable(value: Optional[dict]) -> Optional[dict]:
        if value is not None:
            try:
                json.dumps(value)
            except TypeError as e:
                raise ValueError(f"next_state must be JSON-serializable: {e}") from e
        return value


class SourceIncrementalState(BaseModel):
    last_run: datetime = Field(..., description="Start time of the last successful job, in UTC")
    state: dict = Field(default_factory=dict, description="The `next_state` persisted by the last successful job")
    cursor_field: Optional[str] = Field(default=None, description="The field name to filter records by timestamp")
    run_started_at: Optional[datetime] = Field(default=None, description="Start time of the current job, in UTC")

    @field_validator("last_run", "run_started_at", mode="after")
    def assume_utc(value: Optional[datetime]) -> Optional[datetime]:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value
