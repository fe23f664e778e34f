"""Sends records to dts with Huawei Cloud's official DIS SDK, unchanged.

    python dis_send.py ENDPOINT PROJECT_ID AK SK STREAM_NAME RECORD...

Creates the stream first (as SDK examples do; it exists in dts, so the
create succeeds), sends, then describes and lists streams. Prints what the
SDK saw (or its error) as one JSON line. Used by the
end-to-end tests: the SDK signs requests with AK/SK exactly as it does
against Huawei Cloud.
"""
import base64
import json
import sys

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkdis.v2 import (
    CreateStreamReq,
    CreateStreamRequest,
    DisClient,
    ListStreamsRequest,
    PutRecordsRequest,
    PutRecordsRequestEntry,
    SendRecordsRequest,
    ShowStreamRequest,
)


def main():
    endpoint, project, ak, sk, stream = sys.argv[1:6]
    records = sys.argv[6:]
    client = (
        DisClient.new_builder()
        .with_credentials(BasicCredentials(ak, sk, project))
        .with_endpoints([endpoint])
        .build()
    )
    entries = [
        PutRecordsRequestEntry(data=base64.b64encode(r.encode()).decode(), partition_key=f"k{i}")
        for i, r in enumerate(records)
    ]
    request = SendRecordsRequest(body=PutRecordsRequest(stream_name=stream, records=entries))
    try:
        client.create_stream(
            CreateStreamRequest(body=CreateStreamReq(stream_name=stream, partition_count=3, data_type="BLOB"))
        )
        response = client.send_records(request)
        out = {
            "ok": True,
            "failed_record_count": response.failed_record_count,
            "records": [
                {"partition_id": r.partition_id, "sequence_number": r.sequence_number, "error_code": r.error_code}
                for r in response.records
            ],
        }
        shown = client.show_stream(ShowStreamRequest(stream_name=stream))
        out["partitions"] = [p.partition_id for p in shown.partitions]
        out["listed"] = client.list_streams(ListStreamsRequest()).stream_names
    except exceptions.ClientRequestException as e:
        out = {"ok": False, "status": e.status_code, "error_code": e.error_code, "error_msg": e.error_msg}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
