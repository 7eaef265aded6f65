"""How long DynamoDB Local takes to delete an expired item by TTL (docs/configuration.md, Session lifetimes).

Run with a python that has boto3 (moto's venv has it), against a running DynamoDB Local:
    $LOCAL/moto/bin/python infra/ttl_probe.py http://127.0.0.1:8000 [items]
It creates a table with TTL on ExpiresAt, writes items that expire one second later, polls each
until it is gone, and prints the delay from expiry to deletion (min, median, max). It also
counts the stream's REMOVE records for them.
"""
import statistics
import sys
import time
import uuid

import boto3

endpoint = sys.argv[1]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 20
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local")
ddb = boto3.client("dynamodb", **kw)
streams = boto3.client("dynamodbstreams", **kw)
table = f"ttl-probe-{uuid.uuid4().hex[:8]}"
desc = ddb.create_table(
    TableName=table,
    AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}],
    KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
    BillingMode="PAY_PER_REQUEST",
    StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
)
ddb.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ExpiresAt"})
expires = int(time.time()) + 1
for i in range(count):
    ddb.put_item(TableName=table, Item={"PK": {"S": f"item-{i}"}, "ExpiresAt": {"N": str(expires)}})
left = {f"item-{i}" for i in range(count)}
gone = {}
deadline = time.time() + 600
while left and time.time() < deadline:
    for pk in list(left):
        if "Item" not in ddb.get_item(TableName=table, Key={"PK": {"S": pk}}):
            gone[pk] = time.time() - expires
            left.discard(pk)
    time.sleep(0.1)
delays = sorted(gone.values())
print(f"{len(delays)} of {count} items deleted by TTL within 600 s of expiry")
if delays:
    print(f"expiry to deletion: min {delays[0]:.1f} s, median {statistics.median(delays):.1f} s, max {delays[-1]:.1f} s")
arn = desc["TableDescription"]["LatestStreamArn"]
removes = by_ttl = 0
for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
    it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    for _ in range(5):
        out = streams.get_records(ShardIterator=it)
        # DynamoDB Local names a TTL delete with an event name of its own (not REMOVE) and no
        # userIdentity: anything that is not an INSERT of this probe is a deletion here.
        rs = [r for r in out["Records"] if r["eventName"] != "INSERT"]
        removes += len(rs)
        by_ttl += sum(1 for r in rs if r.get("userIdentity", {}).get("principalId") == "dynamodb.amazonaws.com")
        it = out.get("NextShardIterator")
        if not it:
            break
names = "deletion records"
print(f"stream: {removes} {names} ({by_ttl} marked REMOVE by the TTL principal as AWS marks them; infra/src/poller.rs normalises DynamoDB Local's)")
ddb.delete_table(TableName=table)
