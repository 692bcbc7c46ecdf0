"""A local moto server (in this process, on a free loopback port) and the VPC + EFS a user
would have created before deploying."""
import contextlib
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List

import boto3

from local_stack import emulator
from local_stack.emulator import CREDENTIALS, REGION
from tests.support.moto_shim import moto_shim


@dataclass
class LocalAws:
    endpoint: str
    update_requests: List[Dict[str, Any]] = field(default_factory=list)
    apigateway_calls: List[str] = field(default_factory=list)  # write operations, in order
    # EventBridge's deliveries to Lambda targets (moto cannot run them): rule, function, event
    lambda_events: List[Dict[str, Any]] = field(default_factory=list)

    def env(self, region: str = REGION) -> Dict[str, str]:
        """What a deploy subprocess needs to talk to this server and only to it."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": region,
                "AWS_CONFIG_FILE": "/dev/null",
                "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}

    def client(self, service: str, region: str = REGION) -> Any:
        return boto3.client(service, region_name=region, endpoint_url=self.endpoint,
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                            aws_session_token=CREDENTIALS["AWS_SESSION_TOKEN"])


@contextlib.contextmanager
def local_aws() -> Iterator[LocalAws]:
    """The local stack's moto server (local_stack/emulator.py, an empty account), started
    inside the test-only shim of moto's gaps."""
    updates: List[Dict[str, Any]] = []
    calls: List[str] = []
    deliveries: List[Dict[str, Any]] = []
    with moto_shim(updates, calls, deliveries):
        server = emulator.start()
        try:
            yield LocalAws(endpoint=server.endpoint, update_requests=updates,
                           apigateway_calls=calls, lambda_events=deliveries)
        finally:
            server.stop()


@dataclass
class UserNetwork:
    """The ids a user writes into .chalice/config.json."""
    vpc_id: str
    subnet_ids: List[str]
    lambda_sg: str
    efs_sg: str
    file_system_id: str
    access_point_arn: str
    upload_bucket: str
    jobs_bucket: str  # a name only: the deploy creates the bucket


def build_network(aws: LocalAws, cidr: str = "10.0.0.0/16", nfs_rule: bool = True,
                  region: str = REGION, name: str = "xray",
                  s3_endpoint: bool = True) -> UserNetwork:
    """VPC, two subnets in two zones, a security group for the function, one for the mount
    targets letting NFS in from it, an EFS file system with a mount target per subnet and an
    access point rooted at /xray, a private upload bucket and an S3 gateway endpoint on the
    VPC's main route table — the docs' 'create first' list. The jobs bucket is only named:
    the deploy creates it."""
    ec2, efs = aws.client("ec2", region), aws.client("efs", region)
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    prefix = cidr.split(".")[:2]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=".".join(prefix + [str(i), "0/24"]),
                                 AvailabilityZone=f"{region}{zone}")["Subnet"]["SubnetId"]
               for i, zone in ((1, "a"), (2, "b"))]
    lambda_sg = ec2.create_security_group(GroupName=f"{name}-lambda", Description="function",
                                          VpcId=vpc)["GroupId"]
    efs_sg = ec2.create_security_group(GroupName=f"{name}-efs", Description="mount targets",
                                       VpcId=vpc)["GroupId"]
    if nfs_rule:
        ec2.authorize_security_group_ingress(GroupId=efs_sg, IpPermissions=[{
            "IpProtocol": "tcp", "FromPort": 2049, "ToPort": 2049,
            "UserIdGroupPairs": [{"GroupId": lambda_sg}]}])
    fs = efs.create_file_system(CreationToken=f"{name}-{vpc}", Encrypted=True,
                                PerformanceMode="generalPurpose",
                                ThroughputMode="elastic")["FileSystemId"]
    for subnet in subnets:
        efs.create_mount_target(FileSystemId=fs, SubnetId=subnet, SecurityGroups=[efs_sg])
    access_point = efs.create_access_point(
        FileSystemId=fs, PosixUser={"Uid": 1000, "Gid": 1000},
        RootDirectory={"Path": "/xray", "CreationInfo": {
            "OwnerUid": 1000, "OwnerGid": 1000, "Permissions": "755"}})["AccessPointArn"]
    s3 = aws.client("s3", region)
    bucket = f"{name}-efs-upload-{vpc.split('-')[1]}"
    s3.create_bucket(Bucket=bucket, **({} if region == "us-east-1" else {
        "CreateBucketConfiguration": {"LocationConstraint": region}}))
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True})
    if s3_endpoint:
        (main,) = ec2.describe_route_tables(Filters=[
            {"Name": "vpc-id", "Values": [vpc]},
            {"Name": "association.main", "Values": ["true"]}])["RouteTables"]
        ec2.create_vpc_endpoint(VpcId=vpc, ServiceName=f"com.amazonaws.{region}.s3",
                                VpcEndpointType="Gateway", RouteTableIds=[main["RouteTableId"]])
    return UserNetwork(vpc, subnets, lambda_sg, efs_sg, fs, access_point, bucket,
                       jobs_bucket=f"{name}-jobs-{vpc.split('-')[1]}")
