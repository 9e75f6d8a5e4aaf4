"""A local S3-compatible server for tests: moto's server mode on 127.0.0.1, on a free port.

The zoo and LitData reach it the way they reach any S3-compatible storage: boto3 (and LitData's obstore
client, built from boto3's settings) read ``AWS_ENDPOINT_URL`` and the credentials from the standard AWS
environment variables, which :meth:`S3Server.env` gives (dummy keys: moto accepts any). Nothing leaves
127.0.0.1.
"""

from __future__ import annotations

import logging


class S3Server:
    def __init__(self) -> None:
        self.server = None
        self.url = ""

    def start(self) -> S3Server:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point boto3 at this server (credentials are dummies)."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "zoo-test-key",
            "AWS_SECRET_ACCESS_KEY": "zoo-test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",  # never ask 169.254.169.254 for anything
        }

    def create_bucket(self, name: str) -> None:
        import boto3

        env = self.env()
        boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
        ).create_bucket(Bucket=name)
