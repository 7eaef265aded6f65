"""Prints template.yaml as CloudFormation JSON after SAM's transform (samtranslator, offline), so
tests can check what SAM generates: aliases, CodeDeploy deployment groups, which ARN each route,
the stream mapping and the schedule invoke. Usage: sam_transform.py template.yaml"""

import json
import os
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoPolicies:
    """No managed-policy lookups: the template names no SAM policy template by name."""

    def load(self):
        return {}


os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
template = yaml_parse(open(sys.argv[1]).read())
# As `sam package` would: the code is uploaded, and CodeUri becomes its S3 location.
template["Globals"]["Function"]["CodeUri"] = "s3://bucket/code.zip"
print(json.dumps(transform(template, {}, NoPolicies()), default=str))
