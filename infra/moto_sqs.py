"""moto's server (the local SQS), with its clock read the fast way.

    $LOCAL/moto/bin/python infra/moto_sqs.py -H 127.0.0.1 -p PORT

moto 5.2.5 asks each queued message whether it is visible and whether it is delayed on every
SendMessage (through the queue's attribute map), on every ReceiveMessage, and each time a
long-polling receiver wakes. Each question reads the clock as a naive UTC datetime minus the
epoch's, about 25 us a message: with 4,000 messages owed (the delivery bench's hanging product),
one SendMessage took 110 ms, and the fan-out's sends queued behind moto rather than SQS
(`infra/moto_probe.py`). With no datetime given, that value is time.time(), so this reads it
directly: the same numbers, about 30x sooner (3.8 ms a send at 4,000 queued). Nothing else of
moto changes; the SQS smoke tests run against this launcher.
"""
import sys
import time

import moto.core.utils as utils
import moto.sqs.models as sqs_models

_unix_time = utils.unix_time


def unix_time(dt=None):
    return time.time() if dt is None else _unix_time(dt)


def unix_time_millis(dt=None):
    return unix_time(dt) * 1000.0


sqs_models.unix_time = unix_time
sqs_models.unix_time_millis = unix_time_millis

from moto.server import main  # noqa: E402  (after the clock is in place)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
