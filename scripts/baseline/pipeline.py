#!/usr/bin/env python3
"""The baseline dts is measured against: the pipeline people write by hand.

Reads the binlog from FILE:POS with python-mysql-replication and produces one
JSON message per row with confluent-kafka, keyed by the row's id, until N rows
are acknowledged. Prints {"rows": N, "seconds": S} on stdout.

Tuned as the libraries' docs advise: row events only, one table, producer
batching (linger.ms, batch.num.messages, a large queue), idempotence on like
dts, delivery served with poll(0) and a final flush().
"""
import argparse
import json
import time

from confluent_kafka import Producer
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent


def main():
    ap = argparse.ArgumentParser()
    for name in ("host", "user", "password", "db", "table", "brokers", "topic", "log-file"):
        ap.add_argument("--" + name, required=True)
    for name in ("port", "server-id", "log-pos", "rows"):
        ap.add_argument("--" + name, required=True, type=int)
    a = ap.parse_args()

    producer = Producer({
        "bootstrap.servers": a.brokers,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 1000000,
    })
    started = time.monotonic()
    stream = BinLogStreamReader(
        connection_settings={"host": a.host, "port": a.port, "user": a.user, "passwd": a.password},
        server_id=a.server_id,
        log_file=a.log_file,
        log_pos=a.log_pos,
        resume_stream=True,
        blocking=True,
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
        only_schemas=[a.db],
        only_tables=[a.table],
    )
    sent = 0
    for event in stream:
        for row in event.rows:
            values = row.get("values") or row.get("after_values") or row.get("before_values")
            payload = json.dumps({"after": values, "op": "c", "db": a.db, "table": a.table}, default=str)
            while True:
                try:
                    producer.produce(a.topic, key=str(values["id"]), value=payload)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
            sent += 1
        if sent >= a.rows:
            break
    producer.flush()
    stream.close()
    print(json.dumps({"rows": sent, "seconds": time.monotonic() - started}))


if __name__ == "__main__":
    main()
