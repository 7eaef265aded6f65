"""How long moto's SQS takes to take one message while thousands wait (the delivery bench).

    $LOCAL/moto/bin/python infra/moto_probe.py http://127.0.0.1:<moto port>
It queues 4,000 delayed messages, then times SendMessage alone and beside two long-polling
receivers (what the local event source mapping does). moto's SendMessage, ReceiveMessage and
DeleteMessage grow with the messages queued (its receive and delete scan them all), so the local
stack cannot show SQS's own latency once a product is owed thousands of deliveries.
Measured here against moto_server as installed: 91 ms a send alone, 206 ms beside the receivers;
against infra/moto_sqs.py (what start_sqs runs, the clock read directly): 7.7 ms and 14.1 ms.
"""
import boto3, time, threading, statistics, sys
kw = dict(endpoint_url=sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:9324", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
sqs = boto3.client("sqs", **kw)
url = sqs.create_queue(QueueName=f"probe-{int(time.time())}")["QueueUrl"]
for i in range(0, 4000, 10):
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(j), "MessageBody": "x", "DelaySeconds": 900} for j in range(10)])
def sends(n):
    xs = []
    for _ in range(n):
        t = time.time(); sqs.send_message(QueueUrl=url, MessageBody="y", DelaySeconds=900); xs.append((time.time() - t) * 1000)
    return statistics.median(xs)
print("send, no waiter: p50 %.1f ms" % sends(50))
stop = False
def poll():
    c = boto3.client("sqs", **kw)
    while not stop:
        c.receive_message(QueueUrl=url, WaitTimeSeconds=1, MaxNumberOfMessages=10)
ts = [threading.Thread(target=poll) for _ in range(2)]
[t.start() for t in ts]
time.sleep(0.5)
print("send, 2 long-polling receivers: p50 %.1f ms" % sends(50))
stop = True
[t.join() for t in ts]
