"""Checks against the user's AWS account that catch, before anything is deployed, the mistakes
Lambda would otherwise report only at attach time or, worse, as a timeout on the first request:
an access point in another region or VPC, no mount target in the function's zones, no NFS path;
for the loader, an upload bucket that is missing or in another region, and subnets without a
route to S3 (the loader would hang on S3 until its 900 s timeout).
"""
import ipaddress
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Set

from botocore.exceptions import ClientError

from deploy.errors import DeployError
from deploy.settings import CONFIG

NFS_PORT = 2049


@dataclass(frozen=True)
class Network:
    vpc_id: str
    subnet_cidrs: List[str]
    file_system_id: str


def key(stage: str, name: str) -> str:
    return f"{CONFIG} stages.{stage}.{name}"


def check_region(stage: str, access_point_region: str, deploy_region: str) -> None:
    if access_point_region != deploy_region:
        raise DeployError(
            f"{key(stage, 'efs_access_point_arn')}: the access point is in {access_point_region} "
            f"but this deploy goes to {deploy_region} (AWS_DEFAULT_REGION or the profile's "
            "region). Lambda mounts only file systems of its own region: deploy to "
            f"{access_point_region} or create an access point in {deploy_region}.")


def check_network(ec2: Any, efs: Any, stage: str, subnet_ids: List[str],
                  security_group_ids: List[str], access_point_id: str) -> Network:
    subnets = _describe(lambda: ec2.describe_subnets(SubnetIds=subnet_ids)["Subnets"],
                        key(stage, "subnet_ids"), "subnets", subnet_ids)
    vpcs = {s["VpcId"] for s in subnets}
    if len(vpcs) != 1:
        raise DeployError(f"{key(stage, 'subnet_ids')}: the subnets lie in several VPCs "
                          f"({', '.join(sorted(vpcs))}); a function lives in one")
    vpc_id = vpcs.pop()
    groups = _describe(
        lambda: ec2.describe_security_groups(GroupIds=security_group_ids)["SecurityGroups"],
        key(stage, "security_group_ids"), "security groups", security_group_ids)
    foreign = [g["GroupId"] for g in groups if g["VpcId"] != vpc_id]
    if foreign:
        raise DeployError(f"{key(stage, 'security_group_ids')}: {', '.join(foreign)} belong to "
                          f"another VPC than the subnets ({vpc_id})")

    access_point = _access_point(efs, stage, access_point_id)
    fs_id = access_point["FileSystemId"]
    targets = efs.describe_mount_targets(FileSystemId=fs_id)["MountTargets"]
    ours = [t for t in targets if t.get("VpcId") == vpc_id]
    if not ours:
        where = sorted({t.get("VpcId", "?") for t in targets})
        raise DeployError(
            f"{key(stage, 'efs_access_point_arn')}: the access point's file system {fs_id} has "
            + (f"its mount targets in {', '.join(where)}" if where else "no mount targets")
            + f", but the function's subnets are in {vpc_id}. Use an access point of a file "
            "system with mount targets in the function's VPC (a file system's mount targets are "
            "all in one VPC), or move subnet_ids and security_group_ids to that VPC.")
    zones = {s["AvailabilityZone"] for s in subnets}
    covered = {t["AvailabilityZoneName"] for t in ours if "AvailabilityZoneName" in t} or zones
    if zones - covered:
        raise DeployError(
            f"{key(stage, 'subnet_ids')}: file system {fs_id} has no mount target in "
            f"{', '.join(sorted(zones - covered))}; create one there or use subnets in "
            f"{', '.join(sorted(covered))}")
    network = Network(vpc_id=vpc_id, subnet_cidrs=[s["CidrBlock"] for s in subnets],
                      file_system_id=fs_id)
    _check_nfs(ec2, efs, stage, groups, ours, network)
    return network


def _access_point(efs: Any, stage: str, access_point_id: str) -> Dict[str, Any]:
    try:
        found = efs.describe_access_points(AccessPointId=access_point_id)["AccessPoints"]
    except ClientError as error:
        if error.response["Error"]["Code"] in ("AccessPointNotFound", "ResourceNotFoundException"):
            found = []
        else:
            raise
    if not found:
        raise DeployError(f"{key(stage, 'efs_access_point_arn')}: access point "
                          f"{access_point_id} does not exist in this account and region")
    state = found[0].get("LifeCycleState", "available")
    if state != "available":
        raise DeployError(f"{key(stage, 'efs_access_point_arn')}: access point "
                          f"{access_point_id} is {state}, not available")
    return found[0]


def _check_nfs(ec2: Any, efs: Any, stage: str, function_groups: List[Dict[str, Any]],
               targets: List[Dict[str, Any]], network: Network) -> None:
    """NFS must be allowed both ways: out of the function's groups, into a mount target's."""
    function_ids = {g["GroupId"] for g in function_groups}
    for target in targets:
        target_ids = efs.describe_mount_target_security_groups(
            MountTargetId=target["MountTargetId"])["SecurityGroups"]
        target_groups = ec2.describe_security_groups(GroupIds=target_ids)["SecurityGroups"]
        inbound = any(_allows(rule, function_ids, network.subnet_cidrs)
                      for group in target_groups for rule in group.get("IpPermissions", []))
        if not inbound:
            raise DeployError(
                f"{key(stage, 'security_group_ids')}: no NFS permission: the mount target "
                f"{target['MountTargetId']} ({target.get('AvailabilityZoneName', '?')}) has "
                f"security groups {', '.join(target_ids)}, none of which lets TCP {NFS_PORT} in "
                f"from {', '.join(sorted(function_ids))}. Add an inbound rule to "
                f"{target_ids[0]}: TCP {NFS_PORT} from {sorted(function_ids)[0]}.")
        target_ip = [f"{target['IpAddress']}/32"] if target.get("IpAddress") else []
        outbound = any(_allows(rule, set(target_ids), target_ip)
                       for group in function_groups
                       for rule in group.get("IpPermissionsEgress", []))
        if not outbound:
            raise DeployError(
                f"{key(stage, 'security_group_ids')}: no NFS permission: the function's "
                f"security groups allow no outbound TCP {NFS_PORT} to mount target "
                f"{target['MountTargetId']} ({', '.join(target_ids)}).")


def _allows(rule: Dict[str, Any], group_ids: Set[str], cidrs: Iterable[str]) -> bool:
    protocol = str(rule.get("IpProtocol"))
    if protocol == "-1":
        pass
    elif protocol in ("tcp", "6"):
        if not rule.get("FromPort", 0) <= NFS_PORT <= rule.get("ToPort", 65535):
            return False
    else:
        return False
    if any(pair.get("GroupId") in group_ids for pair in rule.get("UserIdGroupPairs", [])):
        return True
    wanted = [ipaddress.ip_network(c) for c in cidrs]
    if not wanted:
        return False
    for allowed in rule.get("IpRanges", []):
        opening = ipaddress.ip_network(allowed["CidrIp"], strict=False)
        if all(w.version == opening.version and w.subnet_of(opening)  # type: ignore[arg-type]
               for w in wanted):
            return True
    return False


def _describe(call: Any, config_key: str, what: str, ids: List[str]) -> List[Dict[str, Any]]:
    try:
        found = call()
    except ClientError as error:
        code = error.response["Error"]["Code"]
        if code.endswith(".NotFound") or code.endswith(".Malformed"):
            raise DeployError(f"{config_key}: {error.response['Error']['Message']} (looked up "
                              f"in this account and region)") from None
        raise
    missing = set(ids) - {item.get("SubnetId") or item.get("GroupId") for item in found}
    if missing:
        raise DeployError(f"{config_key}: {what} {', '.join(sorted(missing))} not found")
    return found


def check_upload_path(s3: Any, ec2: Any, stage: str, bucket: str, region: str,
                      subnet_ids: List[str]) -> str:
    """The loader reads the upload bucket from inside the VPC: the bucket must exist in the
    function's region and every subnet must route to S3, through a gateway endpoint (free) or
    a NAT gateway. Returns how S3 is reached, for the log."""
    try:
        location = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    except ClientError as error:
        code = error.response["Error"]["Code"]
        if code in ("NoSuchBucket", "404"):
            raise DeployError(f"{key(stage, 'efs_upload_bucket')}: bucket {bucket} does not "
                              f"exist: create it (private) in {region} first") from None
        if code in ("AccessDenied", "403"):
            raise DeployError(f"{key(stage, 'efs_upload_bucket')}: bucket {bucket} belongs to "
                              "another account, or this identity may not "
                              "s3:GetBucketLocation on it") from None
        raise
    bucket_region = {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location,
                                                                                location)
    if bucket_region != region:
        raise DeployError(
            f"{key(stage, 'efs_upload_bucket')}: bucket {bucket} is in {bucket_region}, the "
            f"functions in {region}. The loader reaches S3 through the VPC's gateway endpoint, "
            f"which serves only its own region's buckets: use a bucket in {region}.")

    subnets = ec2.describe_subnets(SubnetIds=subnet_ids)["Subnets"]
    vpc_id = subnets[0]["VpcId"]
    endpoints = ec2.describe_vpc_endpoints(Filters=[
        {"Name": "vpc-id", "Values": [vpc_id]},
        {"Name": "service-name", "Values": [f"com.amazonaws.{region}.s3"]}])["VpcEndpoints"]
    gateway_tables = {table for e in endpoints
                      if e.get("VpcEndpointType", "Gateway") == "Gateway"
                      and e.get("State", "available").lower() == "available"
                      for table in e.get("RouteTableIds", [])}
    ways = set()
    for subnet in subnet_ids:
        table = _route_table(ec2, vpc_id, subnet)
        if table["RouteTableId"] in gateway_tables:
            ways.add("S3 gateway endpoint")
        elif any(r.get("NatGatewayId") and r.get("DestinationCidrBlock") == "0.0.0.0/0"
                 for r in table.get("Routes", [])):
            ways.add("NAT gateway")
        else:
            raise DeployError(
                f"{key(stage, 'subnet_ids')}: subnet {subnet} has no route to S3 (route table "
                f"{table['RouteTableId']}): the loader runs in the VPC and could not read "
                f"s3://{bucket}. Create a gateway endpoint for com.amazonaws.{region}.s3 in "
                f"{vpc_id} with route table {table['RouteTableId']} (gateway endpoints are free).")
    return " and ".join(sorted(ways))


def _route_table(ec2: Any, vpc_id: str, subnet_id: str) -> Dict[str, Any]:
    """The subnet's own route table, or else the VPC's main one (as EC2 routes it)."""
    own = ec2.describe_route_tables(Filters=[
        {"Name": "association.subnet-id", "Values": [subnet_id]}])["RouteTables"]
    if own:
        return own[0]
    main = ec2.describe_route_tables(Filters=[
        {"Name": "vpc-id", "Values": [vpc_id]},
        {"Name": "association.main", "Values": ["true"]}])["RouteTables"]
    if not main:
        raise DeployError(f"VPC {vpc_id} has no main route table: subnet {subnet_id} routes "
                          "nowhere")
    return main[0]
