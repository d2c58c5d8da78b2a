"""Print the prediction records of one request from ``make run``'s predictions bucket.

``python -m devstack.records --s3 http://127.0.0.1:9000 <request id>``: lists the bucket the
gateway's bucket sink writes to, reads each JSON-lines object and prints the records whose
``requestId`` is the one given, one JSON object a line (the embedded store wants signed reads).
"""

from __future__ import annotations

import argparse
import json
import sys
from urllib.parse import urlparse

from minio import Minio

from devstack.__main__ import ACCESS_KEY, PREDICTIONS, SECRET_KEY


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.records", description=__doc__)
    parser.add_argument("--s3", default="http://127.0.0.1:9000", help="the embedded S3 store")
    parser.add_argument("request_id")
    args = parser.parse_args(argv)
    client = Minio(urlparse(args.s3).netloc, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)
    found = 0
    for obj in client.list_objects(PREDICTIONS, recursive=True):
        response = client.get_object(PREDICTIONS, obj.object_name)
        try:
            for line in response.read().splitlines():
                record = json.loads(line)
                if record.get("requestId") == args.request_id:
                    print(json.dumps({"key": obj.object_name, **record}))
                    found += 1
        finally:
            response.close()
            response.release_conn()
    if not found:
        print(f"no record of request {args.request_id} in bucket {PREDICTIONS} yet", file=sys.stderr)
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main())
