"""A bizon 0.6.4 custom source of the records bizon-rs's `generator` source makes (ids 0..total-1,
~200 B JSON payloads, pages of `page_size`), so the benchmark feeds both tools the same rows.
Used by scripts/bench.sh bigquery: `bizon run CONFIG --custom-source bizon_generator.py`."""

from typing import List, Optional, Tuple

from bizon.source.config import SourceConfig
from bizon.source.models import SourceIteration, SourceRecord
from bizon.source.source import AbstractSource


class GeneratorConfig(SourceConfig):
    total: int = 1_000_000
    page_size: int = 10_000


class GeneratorSource(AbstractSource):
    def __init__(self, config: GeneratorConfig):
        super().__init__(config)
        self.config: GeneratorConfig = config

    @staticmethod
    def streams() -> List[str]:
        return ["records"]

    @staticmethod
    def get_config_class() -> type:
        return GeneratorConfig

    def get_authenticator(self):
        return None

    def check_connection(self) -> Tuple[bool, Optional[str]]:
        return True, None

    def get_total_records_count(self) -> Optional[int]:
        return self.config.total

    def get(self, pagination: dict = None) -> SourceIteration:
        start = (pagination or {}).get("next", 0)
        end = min(start + self.config.page_size, self.config.total)
        records = [
            SourceRecord(id=str(i), data={"id": i, "name": f"record-{i}", "payload": "x" * 150})
            for i in range(start, end)
        ]
        return SourceIteration(records=records, next_pagination={"next": end} if end < self.config.total else {})
