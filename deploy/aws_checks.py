"""Checks against the user's AWS account that catch, before anything is deployed, the mistakes
Lambda would otherwise report only at attach time or, worse, as a timeout on the first request:
an access point in another region or VPC, no mount target in the function's zones, no NFS path;
for the loader, an upload bucket that is missing or in another region, and subnets without a
route to S3 (the loader would hang on S3 until its 900 s timeout); for the jobs path, a jobs
bucket in another region, subnets of the API and the worker without a route to S3, an SES
sender that is not verified, and a webhook secret that does not exist.
"""
import ipaddress
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from botocore.exceptions import ClientError

from chalicelib.settings import JOBS_BUCKET as ENV_JOBS_BUCKET
from chalicelib.settings import SES_SENDER as ENV_SES_SENDER
from chalicelib.settings import WEBHOOK_SECRET_NAME as ENV_WEBHOOK_SECRET
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


def bucket_region(s3: Any, config_key: str, bucket: str) -> Optional[str]:
    """The bucket's region, or None when no bucket has that name; another account's (or one
    this identity may not locate) is refused."""
    try:
        location = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    except ClientError as error:
        code = error.response["Error"]["Code"]
        if code in ("NoSuchBucket", "404"):
            return None
        if code in ("AccessDenied", "403", "AllAccessDisabled"):
            raise DeployError(f"{config_key}: bucket {bucket} belongs to another account, or "
                              "this identity may not s3:GetBucketLocation on it") from None
        raise
    return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location)


def check_upload_path(s3: Any, ec2: Any, stage: str, bucket: str, region: str,
                      subnet_ids: List[str]) -> str:
    """The loader reads the upload bucket from inside the VPC: the bucket must exist in the
    function's region and every subnet must route to S3, through a gateway endpoint (free) or
    a NAT gateway. Returns how S3 is reached, for the log."""
    bucket_key = key(stage, "efs_upload_bucket")
    found = bucket_region(s3, bucket_key, bucket)
    if found is None:
        raise DeployError(f"{bucket_key}: bucket {bucket} does not exist: create it (private) "
                          f"in {region} first")
    if found != region:
        raise DeployError(
            f"{bucket_key}: bucket {bucket} is in {found}, the functions in {region}. The "
            f"loader reaches S3 through the VPC's gateway endpoint, which serves only its own "
            f"region's buckets: use a bucket in {region}.")
    return check_s3_route(ec2, stage, region, subnet_ids,
                          f"the loader runs in the VPC and could not read s3://{bucket}")


def check_jobs_bucket(s3: Any, ec2: Any, stage: str, bucket: str, region: str,
                      subnet_ids: List[str]) -> Tuple[bool, str]:
    """The jobs bucket, if it exists, must be in the functions' region: S3 sends a bucket's
    events to EventBridge in the bucket's own region (where Chalice puts the rules), and the
    gateway endpoint serves only its region's buckets. The subnets of the functions in the VPC
    that use it (the API, the worker) must route to S3. Returns (whether it exists, how S3 is
    reached); a missing bucket is created by the deploy."""
    bucket_key = key(stage, f"environment_variables.{ENV_JOBS_BUCKET}")
    found = bucket_region(s3, bucket_key, bucket)
    if found is not None and found != region:
        raise DeployError(
            f"{bucket_key}: bucket {bucket} is in {found}, the functions in {region}. Its "
            f"events reach EventBridge only in {found}, and the VPC's gateway endpoint serves "
            f"only {region}'s buckets: name a bucket in {region} (or a new name: the deploy "
            "creates it).")
    reach = check_s3_route(ec2, stage, region, subnet_ids,
                           f"the API and the worker run in the VPC and could not reach the jobs "
                           f"bucket s3://{bucket}")
    return found is not None, reach


def check_s3_route(ec2: Any, stage: str, region: str, subnet_ids: List[str],
                   consequence: str) -> str:
    """Every subnet routes to S3, through a gateway endpoint (free) or a NAT gateway; returns
    how, for the log."""
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
                f"{table['RouteTableId']}): {consequence}. Create a gateway endpoint for "
                f"com.amazonaws.{region}.s3 in {vpc_id} with route table "
                f"{table['RouteTableId']} (gateway endpoints are free).")
    return " and ".join(sorted(ways))


def check_ses_sender(ses: Any, stage: str, sender: str, region: str) -> str:
    """The notifier sends from XRAY_SES_SENDER: SES must have verified that address, or its
    domain, in the functions' region (identities are regional). Returns which was verified."""
    domain = sender.rpartition("@")[2]
    found = ses.get_identity_verification_attributes(
        Identities=[sender, domain])["VerificationAttributes"]
    for identity in (sender, domain):
        if (found.get(identity) or {}).get("VerificationStatus") == "Success":
            return "address" if identity == sender else f"domain {domain}"
    statuses = sorted({(found.get(i) or {}).get("VerificationStatus", "not requested")
                       for i in (sender, domain)})
    raise DeployError(
        f"{key(stage, f'environment_variables.{ENV_SES_SENDER}')}: the sender (an address at "
        f"{domain}) is not a verified SES identity in {region} ({', '.join(statuses)}), so the "
        f"notifier could send no e-mail. Verify it: aws ses verify-email-identity --region "
        f"{region} --email-address <the {ENV_SES_SENDER} address> (then open the link SES "
        f"mails to it), or verify the domain: aws ses verify-domain-identity --region {region} "
        f"--domain {domain}; or leave {ENV_SES_SENDER} empty for no e-mail.")


def check_webhook_secret(secrets: Any, stage: str, name: str, region: str) -> str:
    """The notifier signs webhooks with the secret XRAY_WEBHOOK_SECRET_NAME names: it must
    exist (and not be scheduled for deletion) in the functions' region. Its value is never read
    here. Returns the secret's ARN."""
    config_key = key(stage, f"environment_variables.{ENV_WEBHOOK_SECRET}")
    create = (f"aws secretsmanager create-secret --region {region} --name {name} "
              "--secret-string \"whsec_$(openssl rand -base64 32)\"")
    try:
        found = secrets.describe_secret(SecretId=name)
    except ClientError as error:
        if error.response["Error"]["Code"] == "ResourceNotFoundException":
            raise DeployError(f"{config_key}: no secret {name} in {region}, so the notifier "
                              f"could sign no webhook. Create it: {create}; or leave "
                              f"{ENV_WEBHOOK_SECRET} empty for no webhooks.") from None
        raise
    if found.get("DeletedDate"):
        raise DeployError(f"{config_key}: secret {name} is scheduled for deletion: restore it "
                          f"(aws secretsmanager restore-secret --secret-id {name}) or create "
                          f"another: {create}")
    return str(found["ARN"])


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
