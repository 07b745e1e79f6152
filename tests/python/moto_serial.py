"""moto's DynamoDB stand-in, serving one request at a time.

`moto_server` answers every request on its own thread, but moto's DynamoDB
backend is not thread-safe: a transaction snapshots whole tables with
`deepcopy` and restores the snapshot when it is cancelled, so concurrent
writes fail with HTTP 500 ("dictionary changed size during iteration") or,
worse, a cancelled transaction silently undoes another request's write.
Real DynamoDB applies each item write atomically and isolates transactions.
Serialising the requests, in the order they arrive, gives the store
contract's concurrency cases a faithful stand-in (a stricter one:
everything is serial), while keeping moto's own request handling, HTTP
keep-alive included.

A race of a couple of hundred clients (`tests/concurrency.rs`) needs a few
more changes, none of which a client can observe except as speed:

- A transaction snapshots only the items it names, not whole tables.
  moto deep-copies every table a transaction touches before applying it,
  so a transaction cost time in proportion to the table: about 130 ms
  once the table held a race's sessions and orders, against 2-3 ms for a
  put. The items a transaction can change are exactly the ones it names,
  so putting those back on any failure is the same all-or-nothing
  outcome. (A table with a stream keeps moto's whole-table copy, which
  also rolls back the stream records.)
- Model objects are not kept forever. moto records every instance of its
  models (every item, every table copy) in a class-level list for its
  inspection API, which this stand-in never serves; with whole-table
  copies that grew the process by megabytes per transaction, to over
  5 GB in one race.
- `ClientRequestToken` makes a resent transaction idempotent, as in
  DynamoDB: a transaction that succeeded, sent again with the same token
  and the same items within ten minutes, succeeds without writing again;
  with other items, it fails with `IdempotentParameterMismatchException`.
  moto ignores the token, so a resend after a client-side timeout was
  applied twice (and then failed its own conditions).
- Requests take the lock in arrival order (see `FifoLock`), and the
  listening socket holds more pending connections (`LISTEN_BACKLOG`).

Usage: python tests/python/moto_serial.py -H 127.0.0.1 -p PORT
"""

import argparse
import collections
import copy
import json
import threading
import time

from moto.core.exceptions import JsonRESTError
from moto.core.common_models import BaseModel
from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, run_simple

# Connections the listening socket holds before they are accepted. The
# server's default, 128, is less than one race opens at once (a client per
# buyer at the same instant); beyond it the kernel drops the handshakes,
# the clients wait a second or more to try again, and their 2 s connect
# timeout fails requests that DynamoDB would have taken. The kernel caps
# it at net.core.somaxconn.
LISTEN_BACKLOG = 1024

# How long DynamoDB remembers a transaction's client request token.
TOKEN_LIFETIME_SECONDS = 600


_tracked_new = BaseModel.__new__


def _new_untracked_if_dynamodb(cls, *args, **kwargs):
    if cls.__module__.startswith("moto.dynamodb."):
        return object.__new__(cls)
    return _tracked_new(cls, *args, **kwargs)


def stop_tracking_instances():
    """New DynamoDB model objects are no longer recorded. (Replacing the
    lists would not last: moto makes new ones when its state is reset.)"""
    BaseModel.__new__ = staticmethod(_new_untracked_if_dynamodb)


class _TablesAsTheyAre:
    """Stands in for the `copy` module inside moto's DynamoDB backend while
    a transaction runs: a table is "copied" as itself (the transaction's
    items are snapshotted instead, and moto's rollback then puts back the
    same table), everything else is copied as usual."""

    @staticmethod
    def deepcopy(value, memo=None):
        if isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)


def _item_key(table, op):
    """The key of the item a transaction operation names, as moto stores
    it, or None when the operation is malformed (moto refuses it before
    writing it)."""
    attrs = op.get("Item") if "Item" in op else op.get("Key")
    if not isinstance(attrs, dict) or table.hash_key_attr not in attrs:
        return None
    try:
        hash_key = DynamoType(attrs[table.hash_key_attr])
        range_key = None
        if table.range_key_attr is not None:
            if table.range_key_attr not in attrs:
                return None
            range_key = DynamoType(attrs[table.range_key_attr])
    except Exception:  # noqa: BLE001 - moto reports the bad key itself
        return None
    return hash_key, range_key


def _snapshot(backend, transact_items):
    """Copies of the items a transaction names, as they are now (None
    where absent), or None if a table it touches has a stream: moto also
    records stream events, which only its whole-table copy rolls back."""
    saved = []
    for entry in transact_items:
        if not isinstance(entry, dict) or not entry:
            continue
        op = next(iter(entry.values()))
        table = backend.tables.get(op.get("TableName")) if isinstance(op, dict) else None
        if table is None:
            continue
        if table.stream_shard is not None:
            return None
        key = _item_key(table, op)
        if key is None:
            continue
        hash_key, range_key = key
        had_partition = hash_key in table.items
        item = table.get_item(hash_key, range_key)
        saved.append((table, hash_key, range_key, had_partition, copy.deepcopy(item)))
    return saved


def _restore(saved):
    for table, hash_key, range_key, had_partition, item in reversed(saved):
        if range_key is None:
            if item is None:
                table.items.pop(hash_key, None)
            else:
                table.items[hash_key] = item
            continue
        if item is not None:
            table.items[hash_key][range_key] = item
            continue
        partition = table.items.get(hash_key)
        if partition is not None:
            partition.pop(range_key, None)
            if not partition and not had_partition:
                del table.items[hash_key]


_whole_table_transaction = DynamoDBBackend.transact_write_items


def transact_write_items(self, transact_items):
    """moto's transaction, rolled back item by item instead of table by
    table: on any failure every item it names is put back as it was."""
    saved = _snapshot(self, transact_items) if len(transact_items) <= 100 else []
    if saved is None:
        return _whole_table_transaction(self, transact_items)
    dynamodb_models.copy = _TablesAsTheyAre
    try:
        return _whole_table_transaction(self, transact_items)
    except BaseException:
        _restore(saved)
        raise
    finally:
        dynamodb_models.copy = copy


class IdempotentParameterMismatch(JsonRESTError):
    def __init__(self):
        super().__init__(
            "com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException",
            "The client request token was used before with different parameters",
        )


# Tokens of transactions that succeeded: token -> (items as JSON, when, answer).
_tokens = {}
_handler_transaction = DynamoHandler.transact_write_items


def transact_write_items_once_per_token(self):
    token = self.body.get("ClientRequestToken")
    if not token:
        return _handler_transaction(self)
    now = time.monotonic()
    for old in [t for t, (_, at, _) in _tokens.items() if now - at > TOKEN_LIFETIME_SECONDS]:
        del _tokens[old]
    # Binary attributes arrive as bytes, which JSON has no type for.
    items = json.dumps(self.body.get("TransactItems"), sort_keys=True, default=repr)
    if token in _tokens:
        seen_items, _, answer = _tokens[token]
        if seen_items != items:
            raise IdempotentParameterMismatch()
        return answer
    answer = _handler_transaction(self)
    _tokens[token] = (items, now, answer)
    return answer


def adjust_moto():
    stop_tracking_instances()
    DynamoDBBackend.transact_write_items = transact_write_items
    DynamoHandler.transact_write_items = transact_write_items_once_per_token


class FifoLock:
    """A lock granted in the order it was asked for.

    `threading.Lock` wakes an arbitrary waiter, so with a couple of hundred
    requests waiting, as in a race, one of them can be passed over again
    and again until its client gives up (the store's attempt timeout is
    5 s) although the queue as a whole moves in a few hundred
    milliseconds. Here each waiter holds a turn of its own, and the holder
    hands the lock straight to the oldest one.
    """

    def __init__(self):
        self._guard = threading.Lock()
        self._turns = collections.deque()
        self._held = False

    def __enter__(self):
        with self._guard:
            if not self._held:
                self._held = True
                return self
            turn = threading.Lock()
            turn.acquire()
            self._turns.append(turn)
        # Released by the holder as it hands the lock over.
        turn.acquire()
        return self

    def __exit__(self, *_exc):
        with self._guard:
            if self._turns:
                self._turns.popleft().release()
            else:
                self._held = False


class Serialised:
    """A WSGI app that lets one request at a time into the wrapped app, in
    the order they arrive."""

    def __init__(self, app):
        self.app = app
        self.lock = FifoLock()

    def __call__(self, environ, start_response):
        with self.lock:
            # The response body is produced inside the lock: moto may do its
            # work lazily while the body is iterated.
            return list(self.app(environ, start_response))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    adjust_moto()
    BaseWSGIServer.request_queue_size = LISTEN_BACKLOG
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        Serialised(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
