"""Run bizon 0.6.4 against the local BigQuery emulator: bizon's BigQuery clients have no endpoint
keys, so their constructors are patched here (REST to REST_URL, Storage Write to an insecure gRPC
channel at GRPC_TARGET, anonymous credentials: the emulator ignores tokens), then bizon's CLI runs.

    python bizon_on_emulator.py REST_URL GRPC_TARGET CONFIG CUSTOM_SOURCE
"""

import sys

import grpc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import BigQueryWriteClient
from google.cloud.bigquery_storage_v1.services.big_query_write.transports import BigQueryWriteGrpcTransport

rest_url, grpc_target, config, custom_source = sys.argv[1:5]

bigquery_init = bigquery.Client.__init__


def patched_bigquery_init(self, *args, **kwargs):
    kwargs["client_options"] = ClientOptions(api_endpoint=rest_url)
    kwargs["credentials"] = AnonymousCredentials()
    bigquery_init(self, *args, **kwargs)


write_init = BigQueryWriteClient.__init__


def patched_write_init(self, *args, **kwargs):
    kwargs.pop("client_options", None)
    kwargs.pop("credentials", None)
    kwargs["transport"] = BigQueryWriteGrpcTransport(channel=grpc.insecure_channel(grpc_target))
    write_init(self, *args, **kwargs)


append_rows = BigQueryWriteClient.append_rows


def patched_append_rows(self, requests, *args, **kwargs):
    # bizon names the default stream `…/tables/T/_default`; the emulator knows `…/tables/T/streams/_default`.
    def renamed(requests):
        for r in requests:
            if r.write_stream.endswith("/_default") and "/streams/" not in r.write_stream:
                r.write_stream = r.write_stream[: -len("_default")] + "streams/_default"
            yield r

    return append_rows(self, renamed(requests), *args, **kwargs)


bigquery.Client.__init__ = patched_bigquery_init
BigQueryWriteClient.__init__ = patched_write_init
BigQueryWriteClient.append_rows = patched_append_rows

from bizon.cli.main import cli  # noqa: E402

sys.argv = ["bizon", "run", config, "--custom-source", custom_source]
cli()
