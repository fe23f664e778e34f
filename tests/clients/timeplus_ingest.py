"""Ingests into dts with Timeplus's official Python SDK, unchanged.

    python timeplus_ingest.py ENDPOINT WORKSPACE API_KEY STREAM

Does what the SDK's examples do: create the stream (it exists in dts, so
the create answers it), list and get it, then ingest rows in the compact
format and text in the lines format. Prints one JSON line with what the
SDK saw.
"""
import json
import sys

from timeplus import Environment, Stream


def main():
    endpoint, workspace, api_key, name = sys.argv[1:5]
    env = Environment().address(endpoint).apikey(api_key).workspace(workspace)
    out = {}
    try:
        stream = Stream(env=env).name(name).column("raw", "string").create()
        out["created"] = stream.metadata().name
        out["listed"] = [s.name for s in Stream(env=env).list()]
        out["got"] = Stream(env=env).name(name).get().metadata().name
        stream.ingest(["raw"], [["row-1"], ["row-2"]])
        stream.ingest(payload="line-1\nline-2\nline-3", format="lines")
        out["ok"] = True
    except Exception as e:  # the test prints what failed
        out["ok"] = False
        out["error"] = repr(e)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
