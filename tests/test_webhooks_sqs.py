"""The SQS queue variant on moto's server (boto3 over HTTP): the receiver acknowledges after
SendMessage, the batcher drains SQS into PostgreSQL (dedup by event id, and Shopify's body hash) and flushes to an S3 lake."""

import boto3
import pytest

from cdp_ingest.webhooks.batcher import Batcher
from cdp_resources.lake import LakeResource
from tests.webhook_support import (
    Service,
    app,
    app_event,
    fresh_database,
    post,
    queued_rows,
    raw_records,
    secrets_file,
    shopify,
    shopify_order,
    stripe,
    stripe_charge_event,
)


@pytest.fixture
def sqs_queue(s3_endpoint, request):
    client = boto3.client("sqs", endpoint_url=s3_endpoint, region_name="us-east-1")
    return client, client.create_queue(QueueName=f"webhooks-{request.node.name[:40]}")["QueueUrl"]


def test_sqs_queue_acknowledges_and_lands_each_event_once(postgres, s3_endpoint, s3_bucket, sqs_queue, tmp_path):
    client, queue_url = sqs_queue
    service = Service(
        {
            "CDP_WEBHOOK_SQS_QUEUE_URL": queue_url,
            "CDP_SQS_ENDPOINT_URL": s3_endpoint,
            "CDP_WEBHOOK_SECRETS_FILE": str(secrets_file(tmp_path)),
            "CDP_POSTGRES_URL": "postgresql://unused",
        },
        tmp_path / "receiver.log",
    ).start()
    try:
        answers = [
            post(service.url, "acme", "shopify", shopify("acme", "orders/create", shopify_order(7), "sqs-1")),
            post(service.url, "acme", "shopify", shopify("acme", "orders/create", shopify_order(7), "sqs-1")),  # retry
            # a captured delivery replayed under a new (unsigned) event id: the same body
            post(service.url, "acme", "shopify", shopify("acme", "orders/create", shopify_order(7), "sqs-replayed")),
            post(service.url, "acme", "stripe", stripe("acme", stripe_charge_event("evt_sqs", "ch_sqs"))),
            post(service.url, "acme", "app", app("acme", app_event("sqs-app"))),
        ]
        tampered_body, headers = app("acme", app_event("sqs-forged"))
        forged = post(service.url, "acme", "app", (tampered_body.replace(b"pro", b"max"), headers))
    finally:
        service.stop()
    assert [a.status_code for a in answers] == [200] * 5 and forged.status_code == 401
    # SQS delivers at least once: the same message body a second time stands for a redelivery.
    [message] = client.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1, VisibilityTimeout=0)["Messages"]
    client.send_message(QueueUrl=queue_url, MessageBody=message["Body"])
    assert (
        int(
            client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])[
                "Attributes"
            ]["ApproximateNumberOfMessages"]
        )
        == 6
    )

    url = fresh_database(postgres)
    lake = LakeResource(base_uri=f"s3://{s3_bucket}/lake", s3_endpoint_url=s3_endpoint)
    Batcher(url, lake, max_age_seconds=0, sqs=client, sqs_queue_url=queue_url).step()
    assert client.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []) == []
    assert queued_rows(url, "acme") == 0
    assert [r["id"] for r in raw_records(lake, "acme", "shopify")] == [7]
    assert [r["id"] for r in raw_records(lake, "acme", "stripe")] == ["ch_sqs"]
    assert [r["message_id"] for r in raw_records(lake, "acme", "app")] == ["sqs-app"]
