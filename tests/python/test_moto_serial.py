"""The DynamoDB stand-in's changes to moto keep DynamoDB's semantics.

Runs moto in process (`mock_aws`) with `moto_serial.adjust_moto()` applied,
and checks what a client sees: a cancelled or refused transaction leaves
every item it names as it was, a successful one is applied once per
client request token, and the serialising lock is granted in arrival
order.
"""

import gc
import os
import sys
import threading
import time
import uuid

import boto3
import botocore
import pytest
from moto import mock_aws

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import moto_serial  # noqa: E402

moto_serial.adjust_moto()

from moto.dynamodb.models import dynamodb_backends  # noqa: E402
from moto.dynamodb.models.dynamo_type import Item  # noqa: E402
from moto.dynamodb.models.table import Table  # noqa: E402

ACCOUNT = "123456789012"
REGION = "us-east-1"


def key(pk, sk="a"):
    return {"pk": {"S": pk}, "sk": {"S": sk}}


@pytest.fixture(params=[False, True], ids=["plain", "with-stream"])
def db(request):
    with mock_aws():
        client = boto3.client(
            "dynamodb",
            region_name=REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        extra = {}
        if request.param:
            extra["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            }
        client.create_table(
            TableName="t",
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
            **extra,
        )
        client.put_item(TableName="t", Item={**key("stock"), "n": {"N": "1"}})
        client.put_item(TableName="t", Item={**key("kept"), "v": {"S": "before"}})
        yield client


def get(client, pk, sk="a"):
    out = client.get_item(TableName="t", Key=key(pk, sk), ConsistentRead=True)
    return out.get("Item")


def commit(extra=()):
    """A commit-like transaction: take a unit, add an order, add an item
    in a new partition, delete one, overwrite one."""
    return [
        {
            "Update": {
                "TableName": "t",
                "Key": key("stock"),
                "UpdateExpression": "SET n = n - :one",
                "ConditionExpression": "n >= :one",
                "ExpressionAttributeValues": {":one": {"N": "1"}},
            }
        },
        {
            "Put": {
                "TableName": "t",
                "Item": {**key("order"), "blob": {"B": b"\x00\x01"}},
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        },
        {"Put": {"TableName": "t", "Item": key("new-partition", "b")}},
        {"Delete": {"TableName": "t", "Key": key("kept")}},
        *extra,
    ]


def assert_untouched(client):
    assert get(client, "stock")["n"] == {"N": "1"}
    assert get(client, "order") is None
    assert get(client, "new-partition", "b") is None
    assert get(client, "kept")["v"] == {"S": "before"}


def test_a_cancelled_transaction_leaves_every_item_as_it_was(db):
    missing = {
        "ConditionCheck": {
            "TableName": "t",
            "Key": key("missing"),
            "ConditionExpression": "attribute_exists(pk)",
        }
    }
    with pytest.raises(db.exceptions.TransactionCanceledException) as err:
        db.transact_write_items(TransactItems=commit([missing]))
    codes = [r["Code"] for r in err.value.response["CancellationReasons"]]
    assert codes == ["None"] * 4 + ["ConditionalCheckFailed"]
    assert_untouched(db)


def test_a_refused_transaction_leaves_every_item_as_it_was(db):
    # Two operations on one item: DynamoDB refuses the whole request.
    twice = {
        "ConditionCheck": {
            "TableName": "t",
            "Key": key("stock"),
            "ConditionExpression": "attribute_exists(pk)",
        }
    }
    with pytest.raises(botocore.exceptions.ClientError) as err:
        db.transact_write_items(TransactItems=commit([twice]))
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert_untouched(db)


def test_a_successful_transaction_is_applied_once_per_token(db):
    # Tokens outlive tables, as in DynamoDB: each test needs its own.
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    db.transact_write_items(TransactItems=commit(), ClientRequestToken=first)
    assert get(db, "stock")["n"] == {"N": "0"}
    assert get(db, "order")["blob"] == {"B": b"\x00\x01"}
    assert get(db, "new-partition", "b") is not None
    assert get(db, "kept") is None

    # The resend of a request whose answer was lost: success, no new write.
    db.transact_write_items(TransactItems=commit(), ClientRequestToken=first)
    assert get(db, "stock")["n"] == {"N": "0"}

    # The same token with other items is an error, not a write.
    with pytest.raises(botocore.exceptions.ClientError) as err:
        db.transact_write_items(TransactItems=commit()[:1], ClientRequestToken=first)
    assert err.value.response["Error"]["Code"] == "IdempotentParameterMismatchException"

    # A new token is a new transaction: its conditions fail now.
    with pytest.raises(db.exceptions.TransactionCanceledException) as err:
        db.transact_write_items(TransactItems=commit(), ClientRequestToken=second)
    codes = [r["Code"] for r in err.value.response["CancellationReasons"]]
    assert codes[:2] == ["ConditionalCheckFailed", "ConditionalCheckFailed"]
    assert get(db, "stock")["n"] == {"N": "0"}


def test_transactions_do_not_copy_or_keep_tables(db):
    table = dynamodb_backends[ACCOUNT][REGION].tables["t"]
    for n in range(20):
        op = "attribute_exists(pk)" if n % 2 else "attribute_not_exists(pk)"
        item = {"Put": {"TableName": "t", "Item": key(f"p{n}"), "ConditionExpression": op}}
        try:
            db.transact_write_items(TransactItems=[item])
        except db.exceptions.TransactionCanceledException:
            pass
    assert len([get(db, f"p{n}") for n in range(0, 20, 2) if get(db, f"p{n}")]) == 10
    assert all(get(db, f"p{n}") is None for n in range(1, 20, 2))
    gc.collect()
    if table.stream_shard is None:
        # The same table object throughout: no whole-table copy replaced it.
        assert dynamodb_backends[ACCOUNT][REGION].tables["t"] is table
    assert len(Item.instances_tracked) == 0
    assert len(Table.instances_tracked) == 0


def test_the_lock_is_granted_in_arrival_order():
    lock = moto_serial.FifoLock()
    order = []
    threads = []

    def take(n):
        with lock:
            order.append(n)

    with lock:
        for n in range(20):
            thread = threading.Thread(target=take, args=(n,), daemon=True)
            thread.start()
            threads.append(thread)
            # Wait until this one is queued before the next one asks.
            deadline = time.monotonic() + 5
            while len(lock._turns) < n + 1:
                assert time.monotonic() < deadline, "a thread never queued"
                time.sleep(0.001)
    for thread in threads:
        thread.join(5)
    assert order == list(range(20))
